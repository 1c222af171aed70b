/* cmd_stats.c — `hakmem stats FILE [--json]`: one pass over a trace, counts
 * per kind and per detection, threads, duration, bytes per event, whether
 * the trace is complete and how the run ended. Memory: one bit per thread. */
#include <getopt.h>
#include <sys/stat.h>

#include "cli.h"

typedef struct trace_stats {
  uint64_t events;
  uint64_t counts[HKT_EV__COUNT];
  uint64_t detections[HKT_DET__COUNT];
  uint64_t threads;             /* distinct thread indexes seen */
  uint64_t duration_ns;         /* latest event time */
  uint64_t first_seq, last_seq;
  uint64_t bytes;               /* file size on disk */
  int complete;
  int end_seen;
  unsigned end_kind;            /* enum hkt_end */
  uint64_t end_code;            /* exit status or signal number */
  const char *error;            /* reader message if it stopped on an error */
} trace_stats;

/* A growable bitmap of thread indexes, so `threads` counts distinct ones.
 * Indexes are dense from 0; past MAX_TID (only a damaged trace) they are
 * counted as one, so memory stays bounded whatever the input. */
#define MAX_TID (1u << 20)
typedef struct tid_set { uint64_t *bits; size_t words; int odd; } tid_set;

static int tid_set_add(tid_set *s, uint32_t tid) {
  if (tid == HKT_TID_RECORDER) return 0;    /* the recorder's own thread */
  if (tid >= MAX_TID) { int first = !s->odd; s->odd = 1; return first; }
  size_t w = tid / 64;
  if (w >= s->words) {
    size_t n = s->words ? s->words : 4;
    while (n <= w) n *= 2;
    uint64_t *b = realloc(s->bits, n * sizeof *b);
    if (!b) return HKT_ERR_NOMEM;
    memset(b + s->words, 0, (n - s->words) * sizeof *b);
    s->bits = b;
    s->words = n;
  }
  uint64_t m = 1ull << (tid % 64);
  if (s->bits[w] & m) return 0;
  s->bits[w] |= m;
  return 1;
}

/* Reads the whole trace into *st. Returns 0 at a clean end, or the reader's
 * error (st then holds what was read before it). */
static int collect(hkt_reader *r, trace_stats *st) {
  tid_set tids = {0};
  const hkt_event *evs;
  int rc;
  while ((rc = hkt_reader_batch(r, &evs)) > 0) {
    if (st->events == 0) st->first_seq = evs[0].seq;
    st->last_seq = evs[rc - 1].seq;
    st->events += (uint64_t)rc;
    for (int i = 0; i < rc; i++) {
      const hkt_event *ev = &evs[i];
      st->counts[ev->kind < HKT_EV__COUNT ? ev->kind : HKT_EV_NONE]++;
      if (ev->kind == HKT_EV_DETECTION && ev->fn < HKT_DET__COUNT) st->detections[ev->fn]++;
      if (ev->kind == HKT_EV_END) {
        st->end_seen = 1;
        st->end_kind = ev->fn;
        st->end_code = ev->aux;
      }
      if (ev->time_ns > st->duration_ns) st->duration_ns = ev->time_ns;
      int added = tid_set_add(&tids, ev->tid);
      if (HKT_IS_ERR(added)) { rc = added; break; }
      st->threads += (uint64_t)added;
    }
    if (HKT_IS_ERR(rc)) break;
  }
  free(tids.bits);
  if (rc == 0) st->complete = hkt_reader_complete(r) != 0;
  return rc;
}

static void print_text(const char *path, const hkt_header *h, const trace_stats *st) {
  printf("file             %s\n", path);
  printf("format version   %u\n", h->version);
  printf("pid              %u (parent %u)\n", h->pid, h->ppid);
  if (h->forked)
    printf("forked           at seq %llu of %s\n", (unsigned long long)h->fork_seq,
           *h->parent_trace ? h->parent_trace : "(the parent's trace: not named)");
  printf("command          %s\n", h->cmdline ? h->cmdline : "");
  printf("arena base       0x%llx\n", (unsigned long long)h->arena_base);
  printf("clock            %s\n", h->clock ? h->clock : "");
  printf("modules          %u\n", h->num_modules);
  printf("events           %llu\n", (unsigned long long)st->events);
  printf("threads          %llu\n", (unsigned long long)st->threads);
  printf("duration         %llu.%09llu s\n", (unsigned long long)(st->duration_ns / 1000000000u),
         (unsigned long long)(st->duration_ns % 1000000000u));
  printf("bytes            %llu (%.3f bytes/event)\n", (unsigned long long)st->bytes,
         st->events ? (double)st->bytes / (double)st->events : 0.0);
  printf("complete         %s\n", st->complete ? "yes" : st->error ? "no (stops at an error)" : "no (no end frame)");
  if (!st->end_seen) printf("end              unknown (no end event)\n");
  else if (st->end_kind == HKT_END_EXIT) printf("end              exit status %llu\n", (unsigned long long)st->end_code);
  else if (st->end_kind == HKT_END_SIGNAL) printf("end              signal %llu\n", (unsigned long long)st->end_code);
  else printf("end              %s\n", hkt_end_name(st->end_kind) ? hkt_end_name(st->end_kind) : "unknown");
  printf("counts\n");
  for (unsigned k = 1; k < HKT_EV__COUNT; k++)
    if (st->counts[k]) printf("  %-16s %llu\n", hkt_kind_name(k), (unsigned long long)st->counts[k]);
  if (st->counts[HKT_EV_NONE]) printf("  %-16s %llu\n", "(unknown kind)", (unsigned long long)st->counts[HKT_EV_NONE]);
  if (st->counts[HKT_EV_DETECTION]) {
    printf("detections\n");
    for (unsigned d = 1; d < HKT_DET__COUNT; d++)
      if (st->detections[d]) printf("  %-16s %llu\n", hkt_detect_name(d), (unsigned long long)st->detections[d]);
  }
}

static void print_json(const char *path, const hkt_header *h, const trace_stats *st) {
  unsigned end_kind = st->end_seen ? st->end_kind : HKT_END_UNKNOWN;
  printf("{\"file\":");
  cli_json_str(stdout, path);
  printf(",\"version\":%u,\"pid\":%u,\"ppid\":%u,\"cmdline\":", h->version, h->pid, h->ppid);
  cli_json_str(stdout, h->cmdline ? h->cmdline : "");
  printf(",\"clock\":");
  cli_json_str(stdout, h->clock ? h->clock : "");
  printf(",\"arena_base\":");
  cli_json_addr(stdout, h->arena_base);
  printf(",\"start_realtime_ns\":%llu,\"modules\":%u", (unsigned long long)h->start_realtime_ns, h->num_modules);
  printf(",\"fork\":");
  if (h->forked) {
    printf("{\"seq\":%llu,\"parent_trace\":", (unsigned long long)h->fork_seq);
    cli_json_str(stdout, h->parent_trace);
    printf("}");
  } else {
    printf("null");
  }
  printf(",\"events\":%llu,\"threads\":%llu,\"duration_ns\":%llu,\"bytes\":%llu,\"bytes_per_event\":%.6f",
         (unsigned long long)st->events, (unsigned long long)st->threads,
         (unsigned long long)st->duration_ns, (unsigned long long)st->bytes,
         st->events ? (double)st->bytes / (double)st->events : 0.0);
  printf(",\"complete\":%s,\"error\":", st->complete ? "true" : "false");
  cli_json_str(stdout, st->error);
  const char *end_name = hkt_end_name(end_kind);
  printf(",\"end\":{\"kind\":\"%s\",\"status\":%llu,\"signal\":%llu}", end_name ? end_name : "unknown",
         (unsigned long long)(end_kind == HKT_END_EXIT ? st->end_code : 0),
         (unsigned long long)(end_kind == HKT_END_SIGNAL ? st->end_code : 0));
  printf(",\"counts\":{");
  for (unsigned k = 1; k < HKT_EV__COUNT; k++)
    printf("%s\"%s\":%llu", k > 1 ? "," : "", hkt_kind_name(k), (unsigned long long)st->counts[k]);
  printf("},\"detections\":{");
  for (unsigned d = 1; d < HKT_DET__COUNT; d++)
    printf("%s\"%s\":%llu", d > 1 ? "," : "", hkt_detect_name(d), (unsigned long long)st->detections[d]);
  printf("}}\n");
}

int cmd_stats(int argc, char **argv) {
  static const struct option opts[] = {
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
  };
  int json = 0, c;
  optind = 0;   /* 0: a full reset of GNU getopt */
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'j') json = 1;
    else if (c == 'h') return cli_usage("stats", "use 'hakmem help stats'");
    else return cli_bad_option("stats", c, argv, optind);
  }
  if (argc - optind != 1) return cli_usage("stats", "expects one FILE");
  const char *path = argv[optind];

  hkt_reader *r;
  if (HKT_IS_ERR(cli_open_trace("stats", path, &r))) return CLI_EXIT_USAGE;
  trace_stats st = {0};
  struct stat sb;
  if (stat(path, &sb) == 0) st.bytes = (uint64_t)sb.st_size;
  int rc = collect(r, &st);
  if (HKT_IS_ERR(rc)) st.error = hkt_reader_errmsg(r);
  if (json) print_json(path, hkt_reader_header(r), &st);
  else print_text(path, hkt_reader_header(r), &st);
  int out = cli_flush_stdout("stats");
  if (st.error) cli_err("stats", "%s", st.error);
  hkt_reader_close(r);
  if (out) return out;
  return HKT_IS_ERR(rc) ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}
