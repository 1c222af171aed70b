/* cmd_verify.c — `hakmem verify FILE`: is the trace whole and consistent?
 *
 * One pass, memory bounded by what is live (blocks, SuperSlabs, threads),
 * never by the trace's length. Checks:
 *  - the end frame is there and the stream has no error;
 *  - seq runs from 0 with no gap;
 *  - an allocation never returns a live address; a tiny/mid block (cls set)
 *    lies in a registered SuperSlab;
 *  - free and realloc name a live block, unless the allocator said so itself:
 *    a free is excused by a DETECTION (invalid/interior/double/stale free) of
 *    the same pointer by the same thread before that thread's next call; a
 *    realloc by such a detection since the thread's previous call (realloc
 *    is emitted on return, free on entry). realloc(p, 0) may be followed by
 *    the FREE of p that it makes (hakmem records both);
 *  - SuperSlabs do not overlap, are unregistered only if registered, and
 *    never with live blocks (counted from the calls, and as the allocator
 *    reports in aux3);
 *  - threads: no second start while running, no second exit, no exit
 *    without start, no event of a thread (other than 0) before its start.
 *    Calls after a thread's exit are allowed: libc frees thread-local data
 *    after the allocator's exit hook has run, and hakmem serves those.
 * Events of HKT_TID_RECORDER (the recorder's own thread) and END are not
 * a program thread's.
 *
 * A trace whose first event is not a thread_start continues a process that
 * already had a heap (a forked child: the recorder starts a new trace in
 * it): blocks, SuperSlabs and threads from before it are not in the trace,
 * so frees and reallocs of unknown blocks (outside the SuperSlabs the trace
 * registered), blocks in unknown SuperSlabs and threads without a start are
 * not problems there; it says so. A forked child's trace whose header names
 * its parent's (and that trace is there) is checked after the parents'
 * events up to the fork (replay/chain.c), which are not reported on (each
 * trace is verified on its own): then its heap is known whole.
 * One line per problem on stdout (the first MAX_SHOWN), then a summary. */
#include <getopt.h>
#include <inttypes.h>

#include "cli.h"
#include "ahead.h"
#include "../replay/replay.h"   /* rp_chain: a forked child's trace after its parents' */

#define MAX_SHOWN 20

/* ---- live blocks: open addressing, linear probing, backward-shift delete -- */

typedef struct block { uint64_t ptr, seq, ss_seq; } block;   /* ptr 0 = empty slot */
typedef struct block_map { block *slots; size_t cap, count; } block_map;

static size_t slot_of(const block_map *m, uint64_t ptr) {
  return (size_t)((ptr * 0x9e3779b97f4a7c15ull) >> 17) & (m->cap - 1);
}

static block *map_find(block_map *m, uint64_t ptr) {
  if (!m->cap) return NULL;
  for (size_t i = slot_of(m, ptr);; i = (i + 1) & (m->cap - 1)) {
    if (m->slots[i].ptr == ptr) return &m->slots[i];
    if (!m->slots[i].ptr) return NULL;
  }
}

static int map_grow(block_map *m) {
  size_t cap = m->cap ? m->cap * 2 : 1024;
  block *old = m->slots, *s = calloc(cap, sizeof *s);
  if (!s) return HKT_ERR_NOMEM;
  size_t old_cap = m->cap;
  m->slots = s;
  m->cap = cap;
  for (size_t i = 0; i < old_cap; i++) {
    if (!old[i].ptr) continue;
    size_t j = slot_of(m, old[i].ptr);
    while (s[j].ptr) j = (j + 1) & (cap - 1);
    s[j] = old[i];
  }
  free(old);
  return 0;
}

static int map_put(block_map *m, block b) {
  if ((m->count + 1) * 4 > m->cap * 3) HKT_TRY(map_grow(m));
  size_t i = slot_of(m, b.ptr);
  while (m->slots[i].ptr) i = (i + 1) & (m->cap - 1);
  m->slots[i] = b;
  m->count++;
  return 0;
}

static void map_del(block_map *m, block *b) {
  size_t mask = m->cap - 1, i = (size_t)(b - m->slots), j = i;
  for (;;) {   /* move later entries of the probe run back into the hole */
    j = (j + 1) & mask;
    if (!m->slots[j].ptr) break;
    size_t home = slot_of(m, m->slots[j].ptr);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      m->slots[i] = m->slots[j];
      i = j;
    }
  }
  m->slots[i].ptr = 0;
  m->count--;
}

/* ---- registered SuperSlabs: sorted by base, non-overlapping ---------------- */

typedef struct superslab { uint64_t base, size, id, seq, live; } superslab;
typedef struct ss_table { superslab *v; size_t n, cap; } ss_table;

/* Index of the first SuperSlab whose base is > a. */
static size_t ss_upper(const ss_table *t, uint64_t a) {
  size_t lo = 0, hi = t->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (t->v[mid].base <= a) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

static superslab *ss_holding(ss_table *t, uint64_t a) {
  size_t i = ss_upper(t, a);
  if (i == 0) return NULL;
  superslab *s = &t->v[i - 1];
  return a - s->base < s->size ? s : NULL;
}

/* ---- threads --------------------------------------------------------------- */

enum { T_NEW, T_RUNNING, T_EXITED };
#define MAX_TID (1u << 20)      /* thread indexes are dense; past this the trace is damaged */
typedef struct thread_state {
  unsigned char state;
  uint64_t exit_seq;
  uint64_t realloc0_ptr;        /* realloc(p, 0) done: p is freed by it, maybe by a FREE next */
  int free_pending;             /* a free of a non-live pointer awaiting its detection */
  uint64_t free_seq, free_ptr;
  int det_since_call;           /* a free-kind detection since this thread's last call */
  uint64_t det_ptr;
} thread_state;

typedef struct verifier {
  const char *path;
  block_map blocks;
  ss_table ss;
  thread_state *threads;
  size_t nthreads;
  uint64_t next_seq, events, problems;
  int started, inherited;       /* inherited: the process existed before the trace */
  uint64_t base;                /* a forked child's: its parents' events come first (seqs base..) */
  int in_parents;               /* checking the parents' part: not reported */
} verifier;

static __attribute__((format(printf, 3, 4)))
void problem(verifier *v, uint64_t seq, const char *fmt, ...) {
  if (v->in_parents || ++v->problems > MAX_SHOWN) return;
  va_list ap;
  va_start(ap, fmt);
  if (seq == UINT64_MAX) printf("%s: ", v->path);
  else printf("%s: seq %" PRIu64 ": ", v->path, seq >= v->base ? seq - v->base : seq);
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
}

static thread_state *thread_of(verifier *v, uint32_t tid) {
  if (tid >= v->nthreads) {
    size_t n = v->nthreads ? v->nthreads : 16;
    while (n <= tid) n *= 2;
    thread_state *t = realloc(v->threads, n * sizeof *t);
    if (!t) return NULL;
    memset(t + v->nthreads, 0, (n - v->nthreads) * sizeof *t);
    v->threads = t;
    v->nthreads = n;
  }
  return &v->threads[tid];
}

static int is_call(unsigned k) { return k >= HKT_EV_MALLOC && k <= HKT_EV_FREE; }

static int is_free_detection(unsigned det) {
  return det == HKT_DET_INVALID_FREE || det == HKT_DET_INTERIOR_FREE ||
         det == HKT_DET_DOUBLE_FREE || det == HKT_DET_STALE_FREE;
}

/* A pending bad free that no detection explained is a problem now. */
static void settle_free(verifier *v, thread_state *t) {
  if (!t->free_pending) return;
  t->free_pending = 0;
  problem(v, t->free_seq, "free of 0x%" PRIx64 ", which is not a live block", t->free_ptr);
}

static void check_thread(verifier *v, thread_state *t, const hkt_event *ev) {
  switch (ev->kind) {
  case HKT_EV_THREAD_START:
    if (t->state == T_RUNNING)
      problem(v, ev->seq, "thread_start of t%" PRIu32 ", which is already running", ev->tid);
    t->state = T_RUNNING;
    return;
  case HKT_EV_THREAD_EXIT:
    if (t->state == T_EXITED)
      problem(v, ev->seq, "second thread_exit of t%" PRIu32 " (first at seq %" PRIu64 ")", ev->tid, t->exit_seq);
    else if (t->state == T_NEW && ev->tid != 0)
      problem(v, ev->seq, "thread_exit of t%" PRIu32 ", which never started", ev->tid);
    t->state = T_EXITED;
    t->exit_seq = ev->seq;
    return;
  case HKT_EV_END: case HKT_EV_MODULE_LOAD:
    return;   /* written by the recorder, on whichever thread */
  default:
    if (t->state == T_NEW) {
      if (ev->tid != 0 && !v->inherited)
        problem(v, ev->seq, "%s of t%" PRIu32 " before its thread_start", hkt_kind_name(ev->kind), ev->tid);
      t->state = T_RUNNING;
    }
  }
}

/* Forget a live block: it was freed or realloc'ed away. */
static void release_block(verifier *v, block *b) {
  superslab *s = ss_holding(&v->ss, b->ptr);
  if (s && s->seq == b->ss_seq && s->live) s->live--;
  map_del(&v->blocks, b);
}

static int note_alloc(verifier *v, const hkt_event *ev) {
  if (!ev->ptr) return 0;    /* failed allocation */
  block *old = map_find(&v->blocks, ev->ptr);
  if (old) {
    problem(v, ev->seq, "%s returned 0x%" PRIx64 ", which is live (allocated at seq %" PRIu64 ")",
            hkt_kind_name(ev->kind), ev->ptr, old->seq);
    release_block(v, old);
  }
  block b = {.ptr = ev->ptr, .seq = ev->seq, .ss_seq = UINT64_MAX};
  if (ev->cls != HKT_NO_CLASS) {
    superslab *s = ss_holding(&v->ss, ev->ptr);
    if (!s && v->inherited) {
      /* a SuperSlab registered before the trace began */
    } else if (!s)
      problem(v, ev->seq, "%s returned 0x%" PRIx64 " (class %" PRIu32 "), which is in no registered SuperSlab",
              hkt_kind_name(ev->kind), ev->ptr, ev->cls);
    else {
      s->live++;
      b.ss_seq = s->seq;
    }
  }
  return map_put(&v->blocks, b);
}

static void note_free(verifier *v, thread_state *t, const hkt_event *ev) {
  if (!ev->ptr) return;      /* free(NULL) */
  block *b = map_find(&v->blocks, ev->ptr);
  if (b) { release_block(v, b); return; }
  if (v->inherited && !ss_holding(&v->ss, ev->ptr)) return;  /* maybe a block from before the trace */
  t->free_pending = 1;       /* settled by a detection, or by the thread's next call */
  t->free_seq = ev->seq;
  t->free_ptr = ev->ptr;
}

/* realloc: ptr = result, aux = old; emitted on return. */
static int note_realloc(verifier *v, thread_state *t, const hkt_event *ev) {
  if (ev->aux) {
    block *b = map_find(&v->blocks, ev->aux);
    if (!b) {
      if (!(t->det_since_call && t->det_ptr == ev->aux) && !(v->inherited && !ss_holding(&v->ss, ev->aux)))
        problem(v, ev->seq, "realloc of 0x%" PRIx64 ", which is not a live block", ev->aux);
    } else if (!ev->ptr && ev->size == 0 && ev->aux2 == 0) {
      /* realloc(p, 0) frees p (aux2 != 0: an errno, e.g. reallocarray's
       * overflow, or its count: then p was left alone) */
      t->realloc0_ptr = ev->aux;
    } else if (ev->ptr) {                    /* moved, or resized in place */
      release_block(v, b);
    }
  }
  return note_alloc(v, ev);
}

static int note_ss_register(verifier *v, const hkt_event *ev) {
  ss_table *t = &v->ss;
  size_t i = ss_upper(t, ev->ptr);
  const superslab *prev = i ? &t->v[i - 1] : NULL, *next = i < t->n ? &t->v[i] : NULL;
  const superslab *clash = prev && ev->ptr - prev->base < prev->size ? prev
                         : next && next->base - ev->ptr < ev->size ? next : NULL;
  if (clash) {
    problem(v, ev->seq, "SuperSlab 0x%" PRIx64 " (+%" PRIu64 ") overlaps SuperSlab 0x%" PRIx64
            " registered at seq %" PRIu64, ev->ptr, ev->size, clash->base, clash->seq);
    return 0;
  }
  if (!ev->size) {
    problem(v, ev->seq, "SuperSlab 0x%" PRIx64 " registered with size 0", ev->ptr);
    return 0;
  }
  if (t->n == t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    superslab *nv = realloc(t->v, cap * sizeof *nv);
    if (!nv) return HKT_ERR_NOMEM;
    t->v = nv;
    t->cap = cap;
  }
  memmove(&t->v[i + 1], &t->v[i], (t->n - i) * sizeof *t->v);
  t->v[i] = (superslab){.base = ev->ptr, .size = ev->size, .id = ev->aux2, .seq = ev->seq};
  t->n++;
  return 0;
}

/* A live block inside s, to name in a message (a scan: only on a problem). */
static const block *some_block_in(const verifier *v, const superslab *s) {
  for (size_t i = 0; i < v->blocks.cap; i++) {
    const block *b = &v->blocks.slots[i];
    if (b->ptr && b->ss_seq == s->seq && b->ptr - s->base < s->size) return b;
  }
  return NULL;
}

static void note_ss_unregister(verifier *v, const hkt_event *ev) {
  ss_table *t = &v->ss;
  size_t i = ss_upper(t, ev->ptr);
  superslab *s = i ? &t->v[i - 1] : NULL;
  if (!s || s->base != ev->ptr) {
    if (v->inherited) return;
    problem(v, ev->seq, "unregister of SuperSlab 0x%" PRIx64 ", which is not registered", ev->ptr);
    return;
  }
  if (s->size != ev->size)
    problem(v, ev->seq, "SuperSlab 0x%" PRIx64 " unregistered with size %" PRIu64 ", registered with %" PRIu64
            " at seq %" PRIu64, ev->ptr, ev->size, s->size, s->seq);
  if (s->live) {
    const block *b = v->problems < MAX_SHOWN ? some_block_in(v, s) : NULL;
    if (b)
      problem(v, ev->seq, "SuperSlab 0x%" PRIx64 " (id %" PRIu64 ", registered at seq %" PRIu64 ") unregistered"
              " with %" PRIu64 " live blocks, e.g. 0x%" PRIx64 " allocated at seq %" PRIu64,
              s->base, s->id, s->seq, s->live, b->ptr, b->seq);
    else
      problem(v, ev->seq, "SuperSlab 0x%" PRIx64 " (id %" PRIu64 ", registered at seq %" PRIu64 ") unregistered"
              " with %" PRIu64 " live blocks", s->base, s->id, s->seq, s->live);
  } else if (ev->aux3) {
    problem(v, ev->seq, "SuperSlab 0x%" PRIx64 " unregistered while the allocator counts %" PRIu64
            " blocks of it live", s->base, ev->aux3);
  }
  memmove(&t->v[i - 1], &t->v[i], (t->n - i) * sizeof *t->v);
  t->n--;
}

static int check_event(verifier *v, const hkt_event *ev) {
  if (ev->seq != v->next_seq)
    problem(v, ev->seq, ev->seq > v->next_seq ? "expected seq %" PRIu64 " (events missing)"
                                              : "expected seq %" PRIu64 " (out of order)", v->next_seq);
  v->next_seq = ev->seq + 1;
  v->events++;
  if (ev->tid == HKT_TID_RECORDER) return 0;   /* module loads seen by the recorder */
  if (!v->started) {
    v->started = 1;
    v->inherited = ev->kind != HKT_EV_THREAD_START;
  }
  if (ev->tid >= MAX_TID) {
    problem(v, ev->seq, "thread index %" PRIu32 " is out of range", ev->tid);
    return 0;
  }
  thread_state *t = thread_of(v, ev->tid);
  if (!t) return HKT_ERR_NOMEM;
  check_thread(v, t, ev);
  if (is_call(ev->kind) || ev->kind == HKT_EV_THREAD_EXIT) settle_free(v, t);
  if (is_call(ev->kind) && t->realloc0_ptr) {   /* the FREE realloc(p, 0) makes, or none */
    uint64_t p = t->realloc0_ptr;
    t->realloc0_ptr = 0;
    block *b = map_find(&v->blocks, p);
    if (b && !(ev->kind == HKT_EV_FREE && ev->ptr == p)) release_block(v, b);
  }
  if (is_call(ev->kind) && ev->kind != HKT_EV_REALLOC) t->det_since_call = 0;

  switch (ev->kind) {
  case HKT_EV_MALLOC: case HKT_EV_CALLOC: case HKT_EV_ALIGNED:
    return note_alloc(v, ev);
  case HKT_EV_REALLOC: {
    int rc = note_realloc(v, t, ev);
    t->det_since_call = 0;
    return rc;
  }
  case HKT_EV_FREE:
    note_free(v, t, ev);
    return 0;
  case HKT_EV_DETECTION:
    if (!is_free_detection(ev->fn)) return 0;
    if (t->free_pending && t->free_ptr == ev->ptr) {   /* explains the free */
      t->free_pending = 0;
      return 0;
    }
    t->det_since_call = 1;    /* may explain the realloc emitted next */
    t->det_ptr = ev->ptr;
    return 0;
  case HKT_EV_SS_REGISTER:
    return note_ss_register(v, ev);
  case HKT_EV_SS_UNREGISTER:
    note_ss_unregister(v, ev);
    return 0;
  default:
    return 0;
  }
}

int cmd_verify(int argc, char **argv) {
  static const struct option opts[] = {{"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  int c;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    if (c == 'h') return cli_usage("verify", "use 'hakmem help verify'");
    return cli_bad_option("verify", c, argv, optind);
  }
  if (argc - optind != 1) return cli_usage("verify", "expects one FILE");
  verifier v = {.path = argv[optind]};

  hkt_reader *r;
  if (HKT_IS_ERR(cli_open_trace("verify", v.path, &r))) return CLI_EXIT_USAGE;
  const hkt_event *evs;
  int rc, fatal = 0;
  rp_chain ch = {0};
  char why[512] = "";
  if (hkt_reader_header(r)->forked && rp_chain_open(&ch, v.path, why, sizeof why) == 0) {
    /* the parents' events up to the fork, then the trace's own (in ch) */
    static hkt_event buf[256];
    v.base = ch.base;
    v.in_parents = ch.base > 0;
    while (!HKT_IS_ERR(fatal) && (rc = rp_chain_batch(&ch, buf, 256)) > 0)
      for (int i = 0; i < rc && !HKT_IS_ERR(fatal); i++) {
        if (v.in_parents && buf[i].seq >= v.base) v.in_parents = 0;   /* the heap is known whole */
        fatal = check_event(&v, &buf[i]);
      }
    if (HKT_IS_ERR(rc)) snprintf(why, sizeof why, "%s", ch.msg);
    hkt_reader_close(r);
    r = ch.rd[ch.n - 1];   /* the trace's own, for its end */
    ch.rd[ch.n - 1] = NULL;
    rp_chain_close(&ch);
  } else {
    hkt_ahead *ah = NULL;   /* decoding on a thread of its own */
    if (HKT_IS_ERR(rc = hkt_ahead_open(&ah, r))) fatal = rc;
    while (!HKT_IS_ERR(fatal) && (rc = hkt_ahead_batch(ah, &evs)) > 0)
      for (int i = 0; i < rc && !HKT_IS_ERR(fatal); i++) fatal = check_event(&v, &evs[i]);
    hkt_ahead_close(ah);
  }
  if (HKT_IS_ERR(fatal)) {
    cli_err("verify", "%s: %s", v.path, hkt_strerror(fatal));
  } else {
    for (size_t i = 0; i < v.nthreads; i++) settle_free(&v, &v.threads[i]);
    if (HKT_IS_ERR(rc))
      problem(&v, UINT64_MAX, "the trace stops at an error: %s", v.base && *why ? why : hkt_reader_errmsg(r));
    else if (!hkt_reader_complete(r))
      problem(&v, UINT64_MAX, "incomplete: ends after %" PRIu64 " events at offset %" PRIu64
              " without its end frame (the recorder died? see 'hakmem recover')",
              v.events, hkt_reader_offset(r));
  }
  size_t threads = 0;
  for (size_t i = 0; i < v.nthreads; i++) threads += v.threads[i].state != T_NEW;
  if (v.problems > MAX_SHOWN) printf("%s: ... %" PRIu64 " more problems\n", v.path, v.problems - MAX_SHOWN);
  if (!fatal) {
    if (v.problems)
      printf("%s: FAILED: %" PRIu64 " problem%s in %" PRIu64 " events\n", v.path, v.problems,
             v.problems == 1 ? "" : "s", v.events);
    else if (v.base)
      printf("%s: OK: %" PRIu64 " events, %zu threads, complete (a forked child: checked after its "
             "parent's %" PRIu64 " events before the fork)\n", v.path, v.events - v.base, threads, v.base);
    else if (v.inherited && *why) {
      size_t n = strlen(v.path);   /* the reason, without this trace's name before it */
      const char *w = !strncmp(why, v.path, n) && !strncmp(why + n, ": ", 2) ? why + n + 2 : why;
      printf("%s: OK: %" PRIu64 " events, %zu threads, complete (blocks from before the fork were not "
             "checked: %s)\n", v.path, v.events, threads, w);
    }
    else
      printf("%s: OK: %" PRIu64 " events, %zu threads, complete%s\n", v.path, v.events, threads,
             v.inherited ? " (starts in a running process, e.g. a forked child:"
                           " blocks from before it were not checked)" : "");
  }
  int out = cli_flush_stdout("verify");
  hkt_reader_close(r);
  free(v.blocks.slots);
  free(v.ss.v);
  free(v.threads);
  if (fatal || out) return CLI_EXIT_USAGE;
  return v.problems ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
}
