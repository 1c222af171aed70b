/* minimize.c — `hakmem minimize FILE -o OUT [--emit-c OUT.c]`: the smallest
 * set of calls that still makes the trace's first detection.
 *
 * The calls are grouped into units that must stay or go together: a block's
 * allocation, its realloc chain and its frees (a double free or an interior
 * free joins the block it names). The unit of the detecting call is always
 * kept; ddmin (Zeller) runs over the others. Calls after the detecting one
 * are dropped first. Each candidate is written with the trace writer (calls
 * and thread start/exit only: internal events are the allocator's to make)
 * and replayed in a child, leniently: calls in recorded order, addresses
 * mapped. It is interesting when its first detection is of the same kind
 * and made by the same call. The result is replayed once more in a child
 * that records what the allocator does, so OUT is a whole trace that
 * `hakmem replay` reproduces as it is.
 *
 * An injected fault (HAKMEM_INJECT) fires at a thread's N-th event of its
 * site: a candidate that drops calls shifts that count, and most would no
 * longer fire it. So candidates fire it at the first site event of its
 * thread and class (RP_INJECT_AT in their header: the count is held), and
 * one is interesting when the fault fired in that thread and the first
 * detection, of the same kind, came from it: made by the call it fired in
 * or a later one. OUT's header gets the `@after` of where it fired. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "../tools/cli.h"
#include "internal.h"
#include "replay.h"

/* A candidate that drops events can leave a replay thread waiting for an
 * event that never comes: that is a stall, and an uninteresting candidate.
 * Replays of candidates are short: a few seconds without progress say it. */
#define MZ_STALL_S 3.0

typedef struct mz_ev {
  hkt_event ev;              /* str/bid not kept: calls and thread events have none */
  uint32_t unit;             /* UINT32_MAX: thread start/exit */
} mz_ev;

typedef struct mz {
  const char *path, *dir;
  hkt_reader *rd;
  const hkt_header *hdr;
  mz_ev *ev;
  uint64_t n;
  uint32_t nunits, pinned, pinned_fire;
  uint64_t det_call;         /* index in ev[] of the call that made the detection */
  uint64_t fire_call;        /* ... of the call an injected fault fired in, UINT64_MAX none */
  uint32_t fire_tid;         /* ... in this thread */
  int arm;                   /* candidates fire the fault at its first site event */
  rp_result last;            /* the last probe's result */
  const char *config;        /* header config of candidates (the injection retargeted for OUT) */
  unsigned det_kind;
  uint8_t *keep;             /* per unit, for the candidate being tested */
  uint64_t *cand_idx;        /* candidate seq -> index in ev[] */
  uint64_t tests;
  uint64_t total;            /* events in the trace */
  rp_server srv;             /* forks the candidate replays (else one exec each) */
  int have_srv;
  double t0;
  double deadline;           /* no test replays after this (0: none yet) */
  int timed_out;
  int tty;
} mz;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- units ---- */

/* recorded address -> unit of the block that had it last (open addressing) */
typedef struct { uint64_t *k; uint32_t *v; uint64_t cap, n; } amap;
static uint32_t *amap_slot(amap *m, uint64_t k, int add) {
  if (add && (m->n + 1) * 2 > m->cap) {
    amap o = *m;
    m->cap = o.cap ? o.cap * 2 : 1024;
    m->k = calloc(m->cap, sizeof *m->k);
    m->v = calloc(m->cap, sizeof *m->v);
    m->n = 0;
    if (!m->k || !m->v) { fprintf(stderr, "hakmem minimize: out of memory\n"); exit(2); }
    for (uint64_t i = 0; i < o.cap; i++) if (o.k[i]) *amap_slot(m, o.k[i], 1) = o.v[i];
    free(o.k); free(o.v);
  }
  if (!m->cap) return NULL;
  for (uint64_t i = (k * 0x9e3779b97f4a7c15ull >> 17) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
    if (m->k[i] == k) return &m->v[i];
    if (!m->k[i]) {
      if (!add) return NULL;
      m->k[i] = k; m->n++;
      return &m->v[i];
    }
  }
}

/* The block start of an address inside a tiny/mid block (hakmem's
 * geometry), or 0. */
static uint64_t block_start(const hkt_header *h, uint64_t p, uint32_t cls) {
  if (cls >= HAK_CLASSES || cls >= h->num_classes || !h->class_size[cls]) return 0;
  uint64_t lg = cls < HAK_TINY_CLASSES ? HAK_SS_LG_TINY : HAK_SS_LG_MID;
  uint64_t base = p & ~((1ull << lg) - 1), bs = h->class_size[cls];
  if (p < base + HAK_SS_HEADER) return 0;
  return base + HAK_SS_HEADER + (p - base - HAK_SS_HEADER) / bs * bs;
}

static void make_units(mz *z) {
  amap m = {0};
  for (uint64_t i = 0; i < z->n; i++) {
    hkt_event *e = &z->ev[i].ev;
    uint32_t *u;
    if (!rp_is_call(e->kind)) { z->ev[i].unit = UINT32_MAX; continue; }
    uint32_t unit = UINT32_MAX;
    if (e->kind == HKT_EV_FREE || (e->kind == HKT_EV_REALLOC && e->aux)) {
      uint64_t p = e->kind == HKT_EV_FREE ? e->ptr : e->aux;
      if ((u = amap_slot(&m, p, 0))) unit = *u;
      else {
        uint64_t s = block_start(z->hdr, p, e->cls);
        if (s && (u = amap_slot(&m, s, 0))) unit = *u;
      }
    }
    if (unit == UINT32_MAX) unit = z->nunits++;
    z->ev[i].unit = unit;
    if (e->kind != HKT_EV_FREE && e->ptr) *amap_slot(&m, e->ptr, 1) = unit;
  }
  free(m.k);
  free(m.v);
}

/* ---- candidates ---- */

static int write_candidate(mz *z, const char *out) {
  /* Threads with no call left are left out, but for those below the
   * highest one kept: a thread's index is the number of threads that
   * started before it, and an injection names its thread by index. */
  uint32_t maxtid = 0, maxused = 0;
  int any = 0;
  for (uint64_t i = 0; i < z->n; i++) if (z->ev[i].ev.tid != HKT_TID_RECORDER && z->ev[i].ev.tid > maxtid) maxtid = z->ev[i].ev.tid;
  uint8_t *used = calloc((size_t)maxtid + 1, 1);
  if (!used) return HKT_ERR_NOMEM;
  for (uint64_t i = 0; i < z->n; i++)
    if (z->ev[i].unit != UINT32_MAX && z->keep[z->ev[i].unit]) {
      used[z->ev[i].ev.tid] = 1;
      if (z->ev[i].ev.tid >= maxused) maxused = z->ev[i].ev.tid;
      any = 1;
    }
  for (uint32_t t = 0; any && t < maxused; t++) used[t] = 1;
  uint64_t seq = 0;
  for (uint64_t i = 0; i < z->n; i++) {
    mz_ev *m = &z->ev[i];
    if (m->unit == UINT32_MAX ? !used[m->ev.tid] : !z->keep[m->unit]) continue;
    z->cand_idx[seq++] = i;
  }
  free(used);
  /* The header: the configuration, and where a held fault fires. */
  hkt_header h = *z->hdr;
  char cfg[4096];
  snprintf(cfg, sizeof cfg, "%s", z->config ? z->config : "");
  size_t cl = strlen(cfg);
  if (z->arm) snprintf(cfg + cl, sizeof cfg - cl, "%s%s0\n", cl && cfg[cl - 1] != '\n' ? "\n" : "", RP_INJECT_AT);
  h.config = cfg;
  hkt_writer *w;
  HKT_TRY(hkt_writer_open(&w, out, &h));
  int e = 0;
  for (uint64_t k = 0; k < seq && !HKT_IS_ERR(e); k++) e = hkt_writer_put(w, &z->ev[z->cand_idx[k]].ev);
  if (HKT_IS_ERR(e)) { hkt_writer_close(w, 0); return e; }
  hkt_event end = {.kind = HKT_EV_END, .fn = HKT_END_EXIT, .cls = HKT_NO_CLASS,
                   .time_ns = z->n ? z->ev[z->n - 1].ev.time_ns : 0};
  HKT_TRY(hkt_writer_put(w, &end));
  return hkt_writer_close(w, 1);
}

/* Replay the kept units: the index (in ev[]) of the call that made the
 * first detection, if it is of the kind sought; UINT64_MAX otherwise. */
static uint64_t probe(mz *z) {
  if (z->deadline && now_s() > z->deadline) {   /* out of time: keep what is reduced so far */
    z->timed_out = 1;
    return UINT64_MAX;
  }
  char cand[4096];
  snprintf(cand, sizeof cand, "%s/candidate.hkt.zst", z->dir);
  int e = write_candidate(z, cand);
  if (HKT_IS_ERR(e)) {
    fprintf(stderr, "hakmem minimize: %s: cannot write: %s\n", cand, hkt_strerror(e));
    exit(2);
  }
  rp_result r;
  rp_child c;
  z->tests++;
  if (z->tty && now_s() - z->t0 > 1) {
    uint64_t kept = 0;
    for (uint32_t u = 0; u < z->nunits; u++) kept += z->keep[u];
    fprintf(stderr, "\rhakmem minimize: test %" PRIu64 ", %" PRIu64 " of %u units   ", z->tests, kept, z->nunits);
  }
  int e2 = z->have_srv ? rp_server_run(&z->srv, cand, &r, &c) : rp_spawn(cand, "lenient", NULL, MZ_STALL_S, NULL, &r, &c);
  if (e2 && z->have_srv) {   /* the server died: go on without it */
    rp_server_stop(&z->srv);
    z->have_srv = 0;
    e2 = rp_spawn(cand, "lenient", NULL, MZ_STALL_S, NULL, &r, &c);
  }
  if (e2 || !c.finished) return UINT64_MAX;
  z->last = r;
  if (!r.ndet || r.diverged || r.stalled || r.det[0].kind != z->det_kind) return UINT64_MAX;
  return z->cand_idx[r.det[0].seq];
}

/* Interesting: the same detection, made by the same call. */
static int interesting(mz *z) {
  uint64_t d = probe(z);
  if (!z->arm) return d == z->det_call;
  const rp_result *r = &z->last;   /* a fault moved to its first site: where it fired counts */
  return d != UINT64_MAX && r->inj_fired && r->inj_tid == z->fire_tid && r->det[0].seq >= r->inj_seq;
}

/* ddmin over the units not pinned: `set` holds candidates, n of them. */
static void ddmin(mz *z, uint32_t *set, uint32_t n) {
  uint32_t gran = 2;
  uint32_t *tmp = malloc(sizeof(uint32_t) * (n ? n : 1));
  while (n >= 2 && !z->timed_out) {
    int reduced = 0;
    uint32_t chunk = (n + gran - 1) / gran;
    /* Try each complement (drop one chunk), then each chunk alone. */
    for (int pass = 0; pass < 2 && !reduced; pass++) {
      for (uint32_t start = 0; start < n && !reduced; start += chunk) {
        uint32_t end = start + chunk < n ? start + chunk : n;
        for (uint32_t i = 0; i < n; i++) z->keep[set[i]] = pass == 0 ? (i < start || i >= end) : (i >= start && i < end);
        z->keep[z->pinned] = z->keep[z->pinned_fire] = 1;
        if (interesting(z)) {
          uint32_t m = 0;
          for (uint32_t i = 0; i < n; i++) if (z->keep[set[i]]) tmp[m++] = set[i];
          memcpy(set, tmp, m * sizeof *set);
          n = m;
          gran = pass == 0 ? (gran > 2 ? gran - 1 : 2) : 2;
          reduced = 1;
        }
      }
    }
    if (!reduced) {
      if (gran >= n) break;
      gran = gran * 2 < n ? gran * 2 : n;
    }
  }
  memset(z->keep, 0, z->nunits);
  for (uint32_t i = 0; i < n; i++) z->keep[set[i]] = 1;
  z->keep[z->pinned] = z->keep[z->pinned_fire] = 1;
  if (n == 1) {   /* a last try: the pinned unit alone */
    z->keep[set[0]] = 0;
    if (!interesting(z)) z->keep[set[0]] = 1;
  }
  free(tmp);
}

/* cfg: config with the value of its NAME= line replaced by val. */
static int set_line(char *cfg, size_t n, const char *config, const char *name, const char *val) {
  const char *c = config ? config : "", *l = c;
  size_t nl = strlen(name);
  while ((l = strstr(l, name)) && ((l != c && l[-1] != '\n') || l[nl] != '=')) l++;
  if (!l) return -1;
  const char *end = l + nl + 1 + strcspn(l + nl + 1, "\n");
  int k = snprintf(cfg, n, "%.*s%s=%s%s", (int)(l - c), c, name, val, end);
  return k < 0 || (size_t)k >= n ? -1 : 0;
}

/* Candidates run with config from now on: the replay server (which has it
 * in its environment) is started again. */
static void use_config(mz *z, const char *config) {
  hkt_header h = *z->hdr;
  h.config = config;
  z->config = config;
  rp_env_for_hakmem(&h);
  if (z->have_srv) rp_server_stop(&z->srv);
  z->have_srv = rp_server_start(&z->srv, "lenient", MZ_STALL_S) == 0;
}

/* A bug in a cache flush (or one that needs blocks to sit in a cache)
 * takes a full cache: at the default size, a hundred frees and more. With
 * smaller caches (HAKMEM_TCACHE, percent of the default) a few calls fill
 * it; the smallest that still makes the same detection at the same call is
 * kept (the user's configuration otherwise). */
static void shrink_cache(mz *z, char *cfg, size_t n) {
  static const char *const pct[] = {"1", "3", "10", "30"};
  const char *orig = z->config, *l = orig ? strstr(orig, "HAKMEM_TCACHE=") : NULL;
  if (!l || strtoul(l + strlen("HAKMEM_TCACHE="), NULL, 10) <= 1) return;
  for (unsigned i = 0; i < sizeof pct / sizeof *pct; i++) {
    if (z->deadline && now_s() > z->deadline) break;
    if (strtoul(pct[i], NULL, 10) >= strtoul(l + strlen("HAKMEM_TCACHE="), NULL, 10)) break;
    if (set_line(cfg, n, orig, "HAKMEM_TCACHE", pct[i])) return;
    use_config(z, cfg);
    if (interesting(z)) return;
  }
  use_config(z, orig);
}

/* cfg: config with its HAKMEM_INJECT line made to fire where r says the
 * held fault fired: same kind and class, `@after` and `/thread` from r. */
static int retarget(char *cfg, size_t n, const char *config, const rp_result *r) {
  const char *c = config ? config : "", *l = strstr(c, "HAKMEM_INJECT=");
  while (l && l != c && l[-1] != '\n') l = strstr(l + 1, "HAKMEM_INJECT=");
  if (!l) return -1;
  const char *v = l + strlen("HAKMEM_INJECT=");
  char spec[128];
  int k = snprintf(spec, sizeof spec, "%.*s@%" PRIu64 "/%u", (int)strcspn(v, "@/\n"), v, r->inj_after, r->inj_tid);
  return k < 0 || (size_t)k >= sizeof spec ? -1 : set_line(cfg, n, config, "HAKMEM_INJECT", spec);
}

/* ---- --emit-c ---- */

static int emit_c(mz *z, const char *out) {
  FILE *f = fopen(out, "w");
  if (!f) return -1;
  /* Slots: one per block lifetime (address as recorded at allocation). */
  amap slots = {0};
  uint32_t nslots = 0, maxtid = 0, nthreads = 0;
  uint64_t turn = 0;
  for (uint64_t i = 0; i < z->n; i++) if (z->ev[i].ev.tid > maxtid && z->ev[i].ev.tid != HKT_TID_RECORDER) maxtid = z->ev[i].ev.tid;
  char **body = calloc((size_t)maxtid + 1, sizeof *body);
  size_t *blen = calloc((size_t)maxtid + 1, sizeof *blen);
  FILE **bf = calloc((size_t)maxtid + 1, sizeof *bf);
  for (uint64_t i = 0; i < z->n; i++) {
    mz_ev *m = &z->ev[i];
    if (m->unit == UINT32_MAX || !z->keep[m->unit]) continue;
    hkt_event *e = &m->ev;
    if (!bf[e->tid]) { bf[e->tid] = open_memstream(&body[e->tid], &blen[e->tid]); nthreads++; }
    FILE *b = bf[e->tid];
    char arg[96] = "NULL";
    uint64_t a = e->kind == HKT_EV_FREE ? e->ptr : e->kind == HKT_EV_REALLOC ? e->aux : 0;
    if (a) {
      uint32_t *s = amap_slot(&slots, a, 0);
      uint64_t st = s ? a : block_start(z->hdr, a, e->cls);
      if (!s && st) s = amap_slot(&slots, st, 0);
      if (s) snprintf(arg, sizeof arg, "(char *)p[%u] + %" PRIu64, *s - 1, a - st);
      else snprintf(arg, sizeof arg, "(void *)0x%" PRIx64 "ull", a);
    }
    fprintf(b, "  step(%" PRIu64 "); ", turn++);
    uint32_t dst = 0;
    if (e->kind != HKT_EV_FREE && e->ptr) {
      uint32_t *s = amap_slot(&slots, e->ptr, 1);
      *s = ++nslots;
      dst = nslots;
    }
    char lhs[32] = "";
    if (dst) snprintf(lhs, sizeof lhs, "p[%u] = ", dst - 1);
    switch (e->kind) {
    case HKT_EV_MALLOC: fprintf(b, "%smalloc(%" PRIu64 ");", lhs, e->size); break;
    case HKT_EV_CALLOC: fprintf(b, "%scalloc(%" PRIu64 ", %" PRIu64 ");", lhs, e->aux, e->size); break;
    case HKT_EV_REALLOC: fprintf(b, "%srealloc(%s, %" PRIu64 ");", lhs, arg, e->size); break;
    case HKT_EV_ALIGNED:
      if (e->fn == HKT_FN_POSIX_MEMALIGN) {
        if (dst) fprintf(b, "if (posix_memalign(&p[%u], %" PRIu64 ", %" PRIu64 ")) p[%u] = NULL;", dst - 1, e->aux, e->size, dst - 1);
        else fprintf(b, "{ void *q; if (!posix_memalign(&q, %" PRIu64 ", %" PRIu64 ")) free(q); }", e->aux, e->size);
      } else {
        fprintf(b, "%smemalign(%" PRIu64 ", %" PRIu64 ");", lhs, e->aux, e->size);
      }
      break;
    case HKT_EV_FREE: fprintf(b, "free(%s);", arg); break;
    }
    fprintf(b, "  /* seq %" PRIu64 "%s%s */\n  done();\n", e->seq, i == z->fire_call ? ": the injected fault fires" : "",
            i == z->det_call ? (i == z->fire_call ? ", the detection" : ": the detection") : "");
  }
  /* The configuration the bug needs (debug level, injected fault...). */
  char env[1024] = "";
  size_t el = 0;
  for (const char *c = z->config ? z->config : ""; *c;) {
    size_t len = strcspn(c, "\n");
    if (strncmp(c, "HAKMEM_ARENA_", 13) && strncmp(c, "HAKMEM_ON_ERROR", 15) && len < 200 && el + len + 2 < sizeof env) {
      memcpy(env + el, c, len);
      el += len;
      env[el++] = ' ';
      env[el] = 0;
    }
    c += len + (c[len] == '\n');
  }
  fprintf(f, "/* Generated by `hakmem minimize` from %s: the calls that still make its\n"
             " * first detection (%s), with the same threads in the same order.\n"
             " * Build: cc -O0 -pthread repro.c -o repro\n"
             " * Run:   LD_PRELOAD=libhakmem.so %s./repro\n"
             " *        (hakmem reports the detection and aborts) */\n",
          z->path, hkt_detect_name(z->det_kind), env);
  fprintf(f, "#include <malloc.h>\n#include <pthread.h>\n#include <sched.h>\n#include <stdatomic.h>\n"
             "#include <stdio.h>\n#include <stdlib.h>\n\n");
  fprintf(f, "static void *p[%u];\nstatic atomic_ulong turn;\n\n", nslots ? nslots : 1);
  fprintf(f, "/* A turnstile: step N waits until the N-1 steps before it are done. */\n"
             "static void step(unsigned long n) { while (atomic_load(&turn) != n) sched_yield(); }\n"
             "static void done(void) { atomic_fetch_add(&turn, 1); }\n\n");
  for (uint32_t t = 0; t <= maxtid; t++) {
    if (!bf[t]) continue;
    fclose(bf[t]);
    fprintf(f, "static void *thread_%u(void *arg) {\n  (void)arg;\n%s  return NULL;\n}\n\n", t, body[t]);
    free(body[t]);
  }
  fprintf(f, "int main(void) {\n  pthread_t t[%u];\n  int n = 0;\n", nthreads ? nthreads : 1);
  for (uint32_t t = 0; t <= maxtid; t++)
    if (bf[t]) fprintf(f, "  pthread_create(&t[n++], NULL, thread_%u, NULL);\n", t);
  fprintf(f, "  for (int i = 0; i < n; i++) pthread_join(t[i], NULL);\n"
             "  puts(\"repro: all %" PRIu64 " calls made\");\n  return 0;\n}\n", turn);
  free(body); free(blen); free(bf); free(slots.k); free(slots.v);
  return fclose(f);
}

/* ---- the command ---- */

static int load(mz *z) {
  hkt_event ev;
  uint64_t cap = 0, last_call[4096];
  int r, have_det = 0, det_tid_done = 0;
  uint32_t det_tid = 0;
  memset(last_call, 0xff, sizeof last_call);
  while ((r = hkt_reader_next(z->rd, &ev)) == 1) {
    z->total = ev.seq + 1;
    /* After the first detection only the call in progress can matter: an
     * allocation's event comes after what happened inside it. */
    if (have_det && (det_tid_done || ev.tid != det_tid || !rp_is_call(ev.kind))) continue;
    if (have_det) det_tid_done = 1;
    if (ev.tid < 4096 && !have_det) {
      /* realloc of a non-block: a detection and no call event (see
       * rp_det_from_realloc). Kept as the call it was. */
      const hkt_event *lc = last_call[ev.tid] != UINT64_MAX ? &z->ev[last_call[ev.tid]].ev : NULL;
      uint64_t lp = lc ? (lc->kind == HKT_EV_REALLOC ? lc->aux : lc->ptr) : 0;
      if (rp_det_from_realloc(&ev, lc ? lc->kind : 0, lp)) {
        hkt_event d = ev;
        ev.kind = HKT_EV_REALLOC; ev.fn = HKT_FN_REALLOC; ev.ptr = 0; ev.aux = d.ptr; ev.size = 1;
        ev.aux2 = EINVAL; ev.aux3 = 0;
        if (z->n == cap) {
          cap = cap ? cap * 2 : 65536;
          mz_ev *n = realloc(z->ev, cap * sizeof *n);
          if (!n) { fprintf(stderr, "hakmem minimize: out of memory\n"); return 2; }
          z->ev = n;
        }
        z->ev[z->n].ev = ev;
        last_call[ev.tid] = z->n++;
        ev = d;
      }
    }
    if (ev.kind == HKT_EV_DETECTION && !have_det) {
      /* The call that made it: the last one of its thread (a free is
       * emitted on entry, before what it detects). */
      have_det = 1;
      det_tid = ev.tid;
      z->det_kind = ev.fn;
      continue;
    }
    int thread_ev = ev.kind == HKT_EV_THREAD_START || ev.kind == HKT_EV_THREAD_EXIT;
    if (!rp_is_call(ev.kind) && !thread_ev) continue;
    if (ev.tid == HKT_TID_RECORDER) continue;
    if (z->n == cap) {
      cap = cap ? cap * 2 : 65536;
      mz_ev *n = realloc(z->ev, cap * sizeof *n);
      if (!n) { fprintf(stderr, "hakmem minimize: out of memory\n"); return 2; }
      z->ev = n;
    }
    ev.str = NULL; ev.bid = NULL; ev.bid_len = 0; ev.stack_id = 0;
    z->ev[z->n].ev = ev;
    if (rp_is_call(ev.kind) && ev.tid < 4096) last_call[ev.tid] = z->n;
    z->n++;
  }
  if (HKT_IS_ERR(r)) fprintf(stderr, "hakmem minimize: %s (using the events before it)\n", hkt_reader_errmsg(z->rd));
  if (!have_det) {
    cli_err("minimize", "%s: the trace has no detection to keep (nothing to minimize for)", z->path);
    return 2;
  }
  return 0;
}

int cmd_minimize(int argc, char **argv) {
  static const struct option opts[] = {
    {"output", required_argument, NULL, 'o'}, {"emit-c", required_argument, NULL, 'c'},
    {"max-time", required_argument, NULL, 't'}, {"keep-config", no_argument, NULL, 'k'},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  const char *out = NULL, *out_c = NULL;
  double max_time = 60;
  int c, keep_config = 0;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":o:h", opts, NULL)) != -1) {
    switch (c) {
    case 'o': out = optarg; break;
    case 'k': keep_config = 1; break;
    case 'c': out_c = optarg; break;
    case 't': {
      char *end;
      max_time = strtod(optarg, &end);
      if (end == optarg || *end || !(max_time > 0)) return cli_usage("minimize", "--max-time wants seconds > 0");
      break;
    }
    case 'h': return 0;
    default: return cli_bad_option("minimize", c, argv, optind);
    }
  }
  if (optind != argc - 1) return cli_usage("minimize", optind < argc ? "one trace file, please" : "which trace file?");
  if (!out) return cli_usage("minimize", "-o OUT is required");
  mz z = {.path = argv[optind], .tty = isatty(2), .t0 = now_s()};
  if (HKT_IS_ERR(cli_open_trace("minimize", z.path, &z.rd))) return 2;
  z.hdr = hkt_reader_header(z.rd);
  int rc = load(&z);
  if (rc) { hkt_reader_close(z.rd); free(z.ev); return rc; }
  uint64_t total_events = z.total;
  make_units(&z);
  z.keep = calloc(z.n + 1, 1);
  z.cand_idx = malloc((z.n + 2) * sizeof *z.cand_idx);
  char dir[] = "/tmp/hakmem-minimize-XXXXXX";
  if (!z.keep || !z.cand_idx || !mkdtemp(dir)) {
    cli_err("minimize", "cannot set up: %s", strerror(errno));
    return 2;
  }
  z.dir = dir;
  z.fire_call = UINT64_MAX;
  z.config = z.hdr->config;
  rp_env_for_hakmem(z.hdr);
  z.have_srv = rp_server_start(&z.srv, "lenient", MZ_STALL_S) == 0;

  /* The whole call sequence must show it first (else the bug needs
   * something calls do not carry, and there is nothing to minimize); which
   * call makes it is what the replay says. */
  memset(z.keep, 1, z.nunits);
  rc = 2;
  z.det_call = probe(&z);
  if (z.det_call == UINT64_MAX) {
    cli_err("minimize", "%s: replaying its calls does not make its first detection (%s) again; cannot minimize",
            z.path, hkt_detect_name(z.det_kind));
    goto done;
  }
  z.deadline = now_s() + max_time;
  /* An injected fault fired in a call at or before the detecting one:
   * from now on it fires at its first site event (in a smaller cache if
   * that keeps it), and the detection it makes first is the one kept. */
  char cache_cfg[4096];
  if (z.last.inj_fired && z.last.inj_seq < z.n + 1 && z.cand_idx[z.last.inj_seq] <= z.det_call) {
    z.fire_tid = z.last.inj_tid;
    z.arm = 1;
    z.n = z.det_call + 1;
    memset(z.keep, 1, z.nunits);
    if (!keep_config) shrink_cache(&z, cache_cfg, sizeof cache_cfg);
    if (!interesting(&z)) {
      cli_err("minimize", "%s: the injected fault, fired at its first site, no longer makes the detection; "
              "minimizing with the recorded count", z.path);
      z.arm = 0;
      use_config(&z, z.hdr->config);
    } else {
      z.det_call = z.cand_idx[z.last.det[0].seq];
    }
  }
  z.n = z.det_call + 1;          /* calls after it cannot matter */
  z.nunits = 0;
  make_units(&z);
  z.pinned = z.pinned_fire = z.ev[z.det_call].unit;
  uint32_t *set = malloc(sizeof(uint32_t) * (z.nunits ? z.nunits : 1)), n = 0;
  for (uint32_t u = 0; u < z.nunits; u++) if (u != z.pinned && u != z.pinned_fire) set[n++] = u;
  /* The pinned unit alone often suffices: one test before ddmin. Failing
   * that, an allocator bug usually lives in one size class, often in one
   * thread: try keeping only those units, and hand ddmin what is left. */
  memset(z.keep, 0, z.nunits);
  z.keep[z.pinned] = z.keep[z.pinned_fire] = 1;
  if (!interesting(&z)) {
    const hkt_event *pe = &z.ev[z.det_call].ev;
    for (int narrow = 1; narrow >= 0; narrow--) {
      memset(z.keep, 0, z.nunits);
      for (uint64_t i = 0; i < z.n; i++) {
        const mz_ev *m = &z.ev[i];
        if (m->unit != UINT32_MAX && m->ev.cls == pe->cls && (!narrow || m->ev.tid == pe->tid))
          z.keep[m->unit] = 1;
      }
      z.keep[z.pinned] = z.keep[z.pinned_fire] = 1;
      if (interesting(&z)) {
        uint32_t m2 = 0;
        for (uint32_t i = 0; i < n; i++) if (z.keep[set[i]]) set[m2++] = set[i];
        n = m2;
        break;
      }
    }
    ddmin(&z, set, n);
  }
  free(set);
  if (z.tty) fputs("\r\033[K", stderr);

  /* OUT: the kept calls replayed once more, recording what hakmem does,
   * so that it is a whole trace that replays as it is. */
  char cand[4200], cfg[4096];
  snprintf(cand, sizeof cand, "%s/candidate.hkt.zst", dir);
  if (z.arm) {
    /* The count at which the held fault fired in the kept calls is the
     * `@after` that fires it there without help: OUT's HAKMEM_INJECT. */
    double dl = z.deadline;
    z.deadline = 0;
    int found = interesting(&z);
    z.deadline = dl;
    if (!found || retarget(cfg, sizeof cfg, z.config, &z.last)) {
      cli_err("minimize", "%s: the kept calls no longer fire the injected fault where they did", z.path);
      goto done;
    }
    z.fire_call = z.cand_idx[z.last.inj_seq];
    z.config = cfg;
    z.arm = 0;
  }
  if (HKT_IS_ERR(write_candidate(&z, cand))) { cli_err("minimize", "%s: cannot write", cand); goto done; }
  {   /* the final replay (an exec) takes its configuration from the environment */
    hkt_header h = *z.hdr;
    h.config = z.config;
    rp_env_for_hakmem(&h);
  }
  rp_result r;
  rp_child ch;
  if (rp_spawn(cand, "lenient", NULL, 10, out, &r, &ch) || !ch.finished || r.read_err) {
    cli_err("minimize", "%s: cannot write the minimized trace%s%s", out, r.read_err ? ": " : "", r.read_err ? r.read_msg : "");
    goto done;
  }
  uint64_t calls = 0, kept_events = 0;
  uint32_t threads = 0;
  for (uint64_t i = 0; i < z.n; i++) {
    if (z.ev[i].unit != UINT32_MAX && z.keep[z.ev[i].unit]) calls++;
  }
  /* Check OUT the way a user will: a plain replay. */
  rp_result v;
  rp_child vc;
  int ok = !rp_spawn(out, "hakmem", NULL, 10, NULL, &v, &vc) && vc.finished && !v.diverged &&
           v.ndet && v.det[0].kind == z.det_kind;
  kept_events = v.events;
  threads = v.threads;
  printf("hakmem minimize: %s: %" PRIu64 " events -> %" PRIu64 " events in %s (%" PRIu64 " calls, %u threads)\n",
         z.path, total_events, kept_events, out, calls, threads);
  printf("detection kept: %s, made by the call at seq %" PRIu64 " of the original; at seq %" PRIu64
         " of the minimized trace\n", hkt_detect_name(z.det_kind), z.ev[z.det_call].ev.seq, ok ? v.det[0].seq : 0);
  printf("%" PRIu64 " test replays in %.1f s; `hakmem replay %s` %s\n", z.tests, now_s() - z.t0, out,
         ok ? "reproduces it" : "DOES NOT reproduce it");
  for (const char *c = z.config ? z.config : ""; *c; c += strcspn(c, "\n"), c += *c == '\n') {
    size_t len = strcspn(c, "\n");   /* a setting of OUT that is not the input's */
    const char *o = z.hdr->config ? z.hdr->config : "";
    while (*o && (strncmp(o, c, len) || (o[len] && o[len] != '\n'))) o += strcspn(o, "\n"), o += *o == '\n';
    if (len && !*o)
      printf("configuration of %s: %.*s (the input has %s)\n", out, (int)len, c,
             !strncmp(c, "HAKMEM_TCACHE=", 14) ? "a larger cache; fewer calls fill this one"
                                               : "another count: the fault fires at the first site left");
  }
  if (z.timed_out)
    printf("stopped at the time limit (--max-time %g): smaller than the input, not the smallest\n", max_time);
  rc = ok ? 0 : 1;
  if (out_c && z.hdr->forked) {
    /* Its calls free and reuse blocks of the parent's heap, which a program
     * of these calls alone does not have: OUT replays (after the parent's
     * trace up to the fork), a C program would not reproduce. */
    printf("C reproducer: not written: a forked child's calls need its parent's heap (replay %s instead)\n", out);
  } else if (out_c) {
    if (emit_c(&z, out_c)) { cli_err("minimize", "%s: cannot write: %s", out_c, strerror(errno)); rc = 2; }
    else printf("C reproducer: %s\n", out_c);
  }
done:
  if (z.have_srv) rp_server_stop(&z.srv);
  {
    char p[4200];
    snprintf(p, sizeof p, "%s/candidate.hkt.zst", dir);
    unlink(p);
    rmdir(dir);
  }
  hkt_reader_close(z.rd);
  free(z.ev); free(z.keep); free(z.cand_idx);
  return rc;
}
