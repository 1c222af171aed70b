/* report_perfetto.c — Chrome trace-event JSON (ui.perfetto.dev and
 * chrome://tracing open it): SuperSlab lifetimes as complete slices ("X")
 * packed into a few lanes per class, live bytes and live SuperSlabs as
 * counters ("C"), detections as instant events ("i").
 *
 * Times are microseconds from the trace's start. A trace whose events carry
 * no time (all zero) is laid out by sequence number, 1 us per event. */
#include <inttypes.h>
#include <stdlib.h>

#include "analyze.h"
#include "jsonw.h"

#define PID_RUN 1
#define PID_SS 2
#define MAX_LANES 64

typedef struct pf { FILE *f; int first; int by_seq; uint64_t seq0; } pf;

static double ts_of(const pf *p, uint64_t seq, uint64_t time_ns) {
  return p->by_seq ? (double)(seq - p->seq0) : (double)time_ns / 1000.0;
}

static void ev_begin(pf *p) {
  fputs(p->first ? "\n" : ",\n", p->f);
  p->first = 0;
}

static void meta(pf *p, int pid, int64_t tid, const char *what, const char *name) {
  ev_begin(p);
  fprintf(p->f, "{\"ph\":\"M\",\"pid\":%d,", pid);
  if (tid >= 0) fprintf(p->f, "\"tid\":%" PRId64 ",", tid);
  fprintf(p->f, "\"name\":\"%s\",\"args\":{\"name\":", what);
  cli_json_str(p->f, name);
  fputs("}}", p->f);
}

int hka_report_perfetto(const hka_state *s, hka_out *o) {
  pf p = {o->f, 1, s->last_time == 0, s->events ? s->first_seq : 0};
  FILE *f = o->f;
  char name[128];
  fputs("{\"displayTimeUnit\":\"ns\",\"otherData\":{\"generator\":\"hakmem analyze\",\"trace\":", f);
  cli_json_str(f, s->path);
  fprintf(f, ",\"time_axis\":\"%s\"},\"traceEvents\":[", p.by_seq ? "seq (1 us per event)" : "time");

  snprintf(name, sizeof name, "hakmem: %.100s", s->cmdline ? s->cmdline : "?");
  meta(&p, PID_RUN, -1, "process_name", name);
  meta(&p, PID_SS, -1, "process_name", "SuperSlabs");
  for (uint32_t t = 0; t < s->nthreads; t++)
    if (s->threads[t].seen) {
      snprintf(name, sizeof name, "thread %u", t);
      meta(&p, PID_RUN, t, "thread_name", name);
    }

  /* SuperSlab slices: greedy lanes per class so a lane never overlaps */
  uint64_t lane_end[HKA_CLASSES][MAX_LANES];
  int lanes[HKA_CLASSES] = {0};
  uint64_t end_seq = s->last_seq, end_time = s->last_time;
  for (uint32_t i = 0; i < s->nss; i++) {
    const hka_ss *ss = &s->ss[i];
    uint32_t k = ss->cls < 64 ? ss->cls : HKA_LARGE;
    uint64_t from_seq = ss->reg_seq != HKA_NONE ? ss->reg_seq : p.seq0;
    uint64_t from_t = ss->reg_seq != HKA_NONE ? ss->reg_time : 0;
    uint64_t to_seq = ss->unreg_seq != HKA_NONE ? ss->unreg_seq : end_seq;
    uint64_t to_t = ss->unreg_seq != HKA_NONE ? ss->unreg_time : end_time;
    int lane = 0;
    while (lane < lanes[k] && lane_end[k][lane] > from_seq) lane++;
    if (lane == MAX_LANES) lane = MAX_LANES - 1;    /* crowded: the last lane takes the rest */
    if (lane == lanes[k]) {
      lanes[k]++;
      if (k == HKA_LARGE) snprintf(name, sizeof name, "no class, lane %d", lane);
      else snprintf(name, sizeof name, "C%u (%" PRIu64 " B), lane %d", k, hka_class_size(s, k), lane);
      meta(&p, PID_SS, (int64_t)k * 100 + lane, "thread_name", name);
    }
    lane_end[k][lane] = to_seq + 1;
    double ts = ts_of(&p, from_seq, from_t), te = ts_of(&p, to_seq, to_t);
    ev_begin(&p);
    fprintf(f, "{\"ph\":\"X\",\"pid\":%d,\"tid\":%u,\"name\":\"SuperSlab #%" PRIu64 "\",\"cat\":\"superslab\","
               "\"ts\":%.3f,\"dur\":%.3f,\"args\":{\"base\":\"0x%" PRIx64 "\",\"size\":%" PRIu64
               ",\"class\":%d,\"registered_seq\":%" PRId64 ",\"unregistered_seq\":%" PRId64
               ",\"peak_live_blocks\":%" PRIu64 ",\"blocks_held_at_unregister\":%" PRIu64 "}}",
            PID_SS, k * 100 + (unsigned)lane, ss->id, ts, te > ts ? te - ts : 0.0, ss->base, ss->size,
            ss->cls < 64 ? (int)ss->cls : -1, ss->reg_seq != HKA_NONE ? (int64_t)ss->reg_seq : -1,
            ss->unreg_seq != HKA_NONE ? (int64_t)ss->unreg_seq : -1, ss->peak_live,
            ss->live_at_unreg > ss->reported_live ? ss->live_at_unreg : ss->reported_live);
  }

  /* counters, one point per timeline bucket (its highest value) */
  for (uint32_t i = 0; i < s->tl.n; i++) {
    const hka_bucket *b = &s->tl.b[i];
    double ts = ts_of(&p, b->seq0, b->time0);
    ev_begin(&p);
    fprintf(f, "{\"ph\":\"C\",\"pid\":%d,\"name\":\"live bytes\",\"ts\":%.3f,\"args\":{\"bytes\":%" PRIu64 "}}",
            PID_RUN, ts, b->max_live_bytes);
    ev_begin(&p);
    fprintf(f, "{\"ph\":\"C\",\"pid\":%d,\"name\":\"live superslabs\",\"ts\":%.3f,\"args\":{\"superslabs\":%u}}",
            PID_SS, ts, b->ss_max);
  }

  for (uint32_t i = 0; i < s->ncorr; i++) {
    const hka_corr *c = &s->corr[i];
    ev_begin(&p);
    fprintf(f, "{\"ph\":\"i\",\"s\":\"g\",\"pid\":%d,\"tid\":%u,\"name\":", PID_RUN, c->tid);
    cli_json_str(f, c->kind);
    fprintf(f, ",\"cat\":\"detection\",\"ts\":%.3f,\"args\":{\"seq\":%" PRIu64 ",\"ptr\":\"0x%" PRIx64 "\"",
            ts_of(&p, c->seq, c->time_ns), c->seq, c->ptr);
    if (c->ss) {
      const hka_ss *ss = &s->ss[c->ss - 1];
      fprintf(f, ",\"superslab\":%" PRIu64 ",\"superslab_base\":\"0x%" PRIx64 "\",\"unregistered_seq\":%" PRId64,
              ss->id, ss->base, ss->unreg_seq != HKA_NONE ? (int64_t)ss->unreg_seq : -1);
      if (ss->unreg_seq != HKA_NONE) fprintf(f, ",\"unregistered_by\":%u", ss->unreg_tid);
    }
    if (c->have_block)
      fprintf(f, ",\"allocated_seq\":%" PRIu64 ",\"allocated_by\":%u", c->block.alloc_seq, c->block.alloc_tid);
    fputs("}}", f);
  }
  fputs("\n]}\n", f);
  return ferror(f) ? HKT_ERR_IO : 0;
}
