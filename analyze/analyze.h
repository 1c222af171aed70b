/* analyze.h — the lifecycle model `hakmem analyze` builds in one pass.
 *
 * collect.c feeds every event of a trace into an hka_state; the report
 * writers (report_*.c) only read it. Memory is bounded by what is live:
 * blocks (plus a bounded set of freed "ghost" blocks kept for stale-pointer
 * correlation), SuperSlabs, threads and callsites — never by trace length.
 */
#ifndef HAKMEM_ANALYZE_H
#define HAKMEM_ANALYZE_H

#include <stdint.h>
#include <stdio.h>

#include "hakmem/trace.h"

#define HKA_NONE UINT64_MAX       /* "no seq" / "not yet" */
#define HKA_NO_TID UINT32_MAX

/* ---- u64 -> u64 open-addressing map (table.c) --------------------------- */

typedef struct hka_map {
  uint64_t *keys, *vals;          /* key HKA_NONE = empty slot */
  size_t cap, n;                  /* cap is a power of two (or 0) */
} hka_map;

/* The value slot for key (inserted as 0 if absent); NULL when out of memory. */
uint64_t *hka_map_slot(hka_map *m, uint64_t key);
uint64_t *hka_map_find(const hka_map *m, uint64_t key);
void hka_map_free(hka_map *m);

/* ---- blocks ------------------------------------------------------------- */

enum { HKA_B_EMPTY = 0, HKA_B_LIVE = 1, HKA_B_FREED = 2 };
enum { HKA_BF_REMOTE = 1,         /* last free went to a remote queue */
       HKA_BF_PARENT = 2 };       /* allocated in the parent before the fork (inherit.c):
                                     alloc_seq and alloc_tid are the parent trace's */

/* One address handed out by the allocator: its current allocation and a
 * free — while FREED the last one, while LIVE the one before this
 * allocation (who held the address in between; HKA_NONE for a fresh
 * address). One cache line. */
typedef struct hka_block {
  uint64_t ptr;
  uint64_t size : 40, cls : 16, state : 4, flags : 4;   /* cls: HKT_NO_CLASS for none */
  uint64_t alloc_seq, alloc_caller;
  uint64_t free_seq, free_caller;
  uint32_t alloc_tid, free_tid;
  uint32_t stack_id;
  uint32_t ss;                        /* SuperSlab record + 1 at allocation, 0 none */
} hka_block;

/* Blocks keyed by address; freed blocks stay as ghosts until there are too
 * many of them, then the oldest are dropped (hka_blocks_trim). */
typedef struct hka_blocks {
  hka_block *slot;
  size_t cap, used, live, ghosts;
  unsigned shift;                     /* 64 - log2(cap): hka_fib's, kept */
  size_t ghost_cap;                   /* trim above live + ghost_cap */
  uint64_t ghosts_dropped;
} hka_blocks;

/* Fibonacci hashing: the high bits of key * 2^64/phi, spread well even for
 * keys that differ only in a few low bits (neighbouring blocks). */
static inline size_t hka_fib(uint64_t key, size_t cap) {
  return (size_t)((key * 0x9e3779b97f4a7c15ULL) >> (64 - __builtin_ctzll(cap)));
}

/* Blocks are 8..4096-byte aligned: drop the low bits before mixing. */
static inline size_t hka_block_home(const hka_blocks *t, uint64_t ptr) {
  return (size_t)(((ptr >> 3) * 0x9e3779b97f4a7c15ULL) >> t->shift);   /* hka_fib(ptr >> 3, cap) */
}

/* Inline, as the three lookups below run once or twice per event. */
static inline hka_block *hka_blocks_find(hka_blocks *t, uint64_t ptr) {
  if (!t->cap) return NULL;
  size_t j = hka_block_home(t, ptr);
  for (;;) {
    hka_block *b = &t->slot[j];
    if (b->state == HKA_B_EMPTY) return NULL;
    if (b->ptr == ptr) return b;
    j = (j + 1) & (t->cap - 1);
  }
}

/* Start loading ptr's home slot (the table is far bigger than the cache). */
static inline void hka_blocks_prefetch(const hka_blocks *t, uint64_t ptr) {
  if (t->cap) __builtin_prefetch(&t->slot[hka_block_home(t, ptr)], 1);
}

/* The table grown (a rebuild) so that one more record fits; 0 or NOMEM. */
int hka_blocks_grow(hka_blocks *t);

/* The record for ptr, created EMPTY if absent; NULL when out of memory. */
static inline hka_block *hka_blocks_get(hka_blocks *t, uint64_t ptr) {
  if ((t->used + 1) * 10 > t->cap * 7 && hka_blocks_grow(t)) return NULL;
  size_t j = hka_block_home(t, ptr);
  for (;;) {                        /* one probe: the record or where it goes */
    hka_block *b = &t->slot[j];
    if (b->state == HKA_B_EMPTY) break;
    if (b->ptr == ptr) return b;
    j = (j + 1) & (t->cap - 1);
  }
  hka_block *b = &t->slot[j];
  *b = (hka_block){.ptr = ptr};
  t->used++;
  return b;
}
/* Called after a state change that may have added ghosts. */
int hka_blocks_trim(hka_blocks *t);
static inline int hka_blocks_maybe_trim(hka_blocks *t) {
  return t->ghosts <= t->ghost_cap ? 0 : hka_blocks_trim(t);
}
void hka_blocks_free(hka_blocks *t);

/* ---- SuperSlabs --------------------------------------------------------- */

enum { HKA_HOLD_LIVE = 0, HKA_HOLD_CACHE = 1, HKA_HOLD_REMOTE = 2 };
#define HKA_MAX_HOLDERS 8

typedef struct hka_holder {
  uint32_t tid, kind;                 /* kind: HKA_HOLD_* */
  uint64_t blocks;
} hka_holder;

typedef struct hka_ss {
  uint64_t id, base, size;
  uint32_t cls, owner;
  uint64_t reg_seq, reg_time;
  uint32_t reg_tid, unreg_tid;
  uint64_t unreg_seq, unreg_time;     /* HKA_NONE while registered */
  uint64_t live, peak_live, peak_seq; /* blocks the program holds in it */
  uint64_t allocs, frees, remote_pushes, drains, refills, adopts;
  uint64_t last_drain_seq;
  uint64_t reported_live;             /* SS_UNREGISTER aux3: the allocator's own count */
  uint64_t live_at_unreg;             /* program-held blocks at unregister */
  uint64_t invariant_seq;             /* an ss_invariant detection (a release with blocks held), HKA_NONE */
  uint32_t invariant_tid;
  uint32_t detections;                /* correlations pointing here */
  uint32_t nholders;
  hka_holder holders[HKA_MAX_HOLDERS]; /* who held blocks at unregister */
  uint64_t held_unattributed;
  uint64_t parent_reg_seq;            /* inherited from the parent's trace: its register seq there;
                                         HKA_NONE otherwise */
  uint32_t parent_reg_tid;
} hka_ss;

/* ---- correlations: detections and bad frees ------------------------------ */

typedef struct hka_corr {
  uint64_t seq, time_ns;
  uint32_t tid;
  uint32_t detect;                    /* enum hkt_detect, 0 when found by the analysis */
  const char *kind;                   /* "stale_free", "free_unregistered", ... */
  uint64_t ptr, extra, caller;
  uint64_t free_seq;                  /* the FREE event a detection follows, or HKA_NONE */
  int have_block;
  hka_block block;                    /* the block's history at the event */
  uint32_t ss;                        /* SuperSlab record + 1, 0 none */
  int ss_registered;                  /* was it registered at the event */
} hka_corr;

/* ---- per class, per thread ---------------------------------------------- */

typedef struct hka_class {
  uint64_t allocs, frees, bytes, freed_bytes;
  uint64_t live, live_bytes, peak_live, peak_live_bytes;
  uint64_t refills, refill_blocks, flushes, flush_blocks;
  uint64_t remote_pushes, drains, drained_blocks;
  uint64_t ss_reg, ss_unreg, ss_live, ss_peak;
} hka_class;

#define HKA_CLASSES 65                /* 64 classes + [64] = no class (large) */
#define HKA_LARGE 64

typedef struct hka_thread {
  int seen;
  uint64_t os_tid;
  uint64_t start_seq, exit_seq;
  uint64_t allocs, frees, bytes;
  uint64_t *refill;                   /* [64]: last_refill's values of this thread's classes
                                         (NULL until its first refill); see hka_state */
  uint64_t inh_ptr, inh_seq, inh_calls; /* this thread's last free of an unknown inherited
                                         block, and its calls then: a free-kind detection of
                                         it before the thread's next call undoes that */
} hka_thread;

/* ---- timeline: a fixed number of buckets over seq, merged in pairs ------- */

#define HKA_TL_MAX 200
typedef struct hka_bucket {
  uint64_t seq0, time0, time1;        /* first seq, first and last time */
  uint64_t live_bytes, max_live_bytes; /* at the end, highest within */
  uint64_t live_blocks;
  uint32_t ss_live[HKA_CLASSES];      /* at the bucket's end */
  uint32_t ss_total, ss_max, detections;
} hka_bucket;

typedef struct hka_timeline {
  uint64_t width;                     /* seqs per bucket */
  uint64_t bound;                     /* first seq past the open bucket */
  uint32_t n;                         /* buckets in use; b[n-1] is the open one */
  hka_bucket b[HKA_TL_MAX];
} hka_timeline;

/* ---- leaks -------------------------------------------------------------- */

typedef struct hka_sym {
  const char *function, *file, *module;  /* NULL when unknown */
  int line;
  uint64_t offset;                    /* within module */
} hka_sym;

typedef struct hka_leak {
  uint64_t caller;
  uint64_t blocks, bytes;
  uint64_t first_seq;
  uint32_t stack_id, tid;
  hka_sym sym;
} hka_leak;

typedef struct hka_symbolizer hka_symbolizer;

/* ---- a trace that starts in a running process (a forked child) ------------ */

/* A forked child's trace starts with its parent's heap: it frees and
 * reallocs blocks it never allocated. Such frees are not invalid_free.
 * With the parent's trace (header forked, parent_trace found) the blocks
 * and SuperSlabs live at the fork are seeded first (inherit.c), so they
 * resolve to the parent's allocation; without it they are counted. */
typedef struct hka_inheritance {
  int heap;                           /* the trace starts in a process that has a heap: header
                                         forked, or its first event is not a THREAD_START */
  int started;                        /* the first event of a program thread was seen */
  int parent_whole;                   /* the parent's trace was read and starts with its
                                         process: the heap at the fork is known whole */
  int unknown_ok;                     /* heap && !parent_whole: a free of an unknown address
                                         may be of a block from before the trace */
  uint64_t unknown_frees;             /* such frees (and reallocs), counted: in no SuperSlab
                                         either trace registered, allocated by neither */
  /* the parent's trace: read when the header says forked and it is found */
  char *parent_path;                  /* the file read; NULL if none was */
  char *parent_note;                  /* forked but not read: why (one line) */
  const char *parent_why;             /* the same in a word: "unnamed", "not_found", "unreadable",
                                         "not_the_parent", "no_fork_event", "ends_before_fork" */
  uint64_t fork_seq;                  /* the FORK event's seq in the parent's trace */
  uint64_t blocks, bytes, superslabs; /* the parent's live blocks and SuperSlabs at the fork */
  uint64_t freed, freed_bytes;        /* of those blocks, freed or realloc'ed by this trace */
  uint64_t live_end, live_end_bytes;  /* still live at the end: left out of the leaks */
} hka_inheritance;

/* ---- the whole state ---------------------------------------------------- */

#define HKA_MAX_CORR 1000

typedef struct hka_module {
  char *path;
  uint64_t base, size;
  uint8_t build_id[40];
  uint32_t build_id_len;
} hka_module;

typedef struct hka_state {
  const char *path;                   /* as given on the command line */
  hkt_header hdr;                     /* copy; strings point into the reader until hka_finish */
  char *cmdline, *clock, *config, *parent_trace;
  hka_module *modules;
  uint32_t nmodules, modules_cap;

  /* how the trace and the run ended */
  int complete;                       /* the end frame was seen */
  int read_error;                     /* <0: the reader stopped with this */
  char *read_errmsg;
  int end_seen;                       /* an END event */
  uint32_t end_how;                   /* enum hkt_end */
  uint64_t end_code;

  uint64_t events, first_seq, last_seq, last_time;
  uint64_t by_kind[HKT_EV__COUNT + 1];  /* [HKT_EV__COUNT] = unknown kinds */
  uint64_t detect_counts[HKT_DET__COUNT + 1];

  /* program view: blocks allocated and not yet freed */
  uint64_t allocs, frees, failed_allocs, alloc_bytes, free_bytes;
  uint64_t live_blocks, live_bytes;
  uint64_t peak_bytes, peak_bytes_seq, peak_bytes_time, peak_bytes_blocks;
  uint64_t peak_blocks, peak_blocks_seq;
  uint64_t large_maps, large_unmaps, large_mapped, large_peak_mapped;
  uint64_t markers;

  hka_class cls[HKA_CLASSES];
  hka_thread *threads;
  uint32_t nthreads, threads_cap;     /* nthreads = highest tid seen + 1 */

  hka_blocks blocks;
  hka_ss *ss;
  uint32_t nss, ss_cap;
  uint64_t ss_live, ss_peak;
  hka_map ss_by_base;                 /* base -> record index + 1 (latest at that base) */
  uint64_t ss_lg_mask;                /* log2 sizes of SuperSlabs seen */
  uint32_t holder_scans;              /* bounded: scans of the block table at bad unregisters */

  hka_map xthread;                    /* (alloc tid << 32 | free tid) -> frees */
  uint64_t same_thread_frees, cross_thread_frees;
  uint64_t xt_small[16][16];          /* [alloc tid][free tid] for tids < 16: counted here
                                         without a branch on same/cross, folded into the
                                         three above by hka_finish */
  hka_map last_flush;                 /* (tid << 16 | cls) -> seq of the last cache flush */
  hka_map last_refill;                /* (tid << 16 | cls) -> SuperSlab record + 1 << 32 | blocks of
                                         the last refill not yet handed out; for a tracked
                                         thread and cls < 64 the value lives in
                                         threads[tid].refill[cls] (read per allocation) and
                                         the map only keeps the keys, in their order */
  struct { uint64_t base, idx1; } ss_cache[64]; /* ss_by_base lookups, direct-mapped by base:
                                         idx1 0 = not in the map; base HKA_NONE = empty */
  int ss_odd_size;                    /* a SuperSlab size seen is not a power of two */
  unsigned ss_lg_min;                 /* the lowest bit of ss_lg_mask (0 while none) */
  struct { uint64_t region, idx1; } ss_memo[64]; /* while !ss_odd_size: ss_index results by
                                         ptr >> (lowest log2 size), direct-mapped; emptied
                                         when a record is added; region HKA_NONE = empty */

  hka_corr *corr;
  uint32_t ncorr, corr_cap;
  uint64_t corr_dropped;

  hka_timeline tl;
  hka_inheritance inh;

  /* filled by hka_finish */
  hka_leak *leaks;
  uint32_t nleaks;
  uint64_t leak_blocks, leak_bytes;
  int finished;
} hka_state;

/* timeline.c: begin before an event is applied, after once it is; close at the end. */
struct hka_state;
void hka_tl_begin_slow(struct hka_state *s, uint64_t seq, uint64_t time_ns);
void hka_tl_close(struct hka_state *s);

/* Per event, inline: most events stay in the open bucket. Call it before
 * s->last_time takes the event's time: the open bucket's end time is
 * s->last_time as of its last event, and is only written when the bucket
 * closes (begin_slow, close). Its highest live bytes and SuperSlab count
 * are raised where those grow (an allocation, a register): hka_tl_raise. */
static inline void hka_tl_begin(hka_state *s, uint64_t seq, uint64_t time_ns) {
  if (seq < s->tl.bound) return;      /* bound is 0 while there is no bucket */
  hka_tl_begin_slow(s, seq, time_ns);
}
static inline void hka_tl_raise(hka_state *s) {
  hka_bucket *b = &s->tl.b[s->tl.n - 1];
  uint64_t m = b->max_live_bytes;     /* a max without a branch: it goes either way */
  b->max_live_bytes = s->live_bytes > m ? s->live_bytes : m;
  if (s->ss_live > b->ss_max) b->ss_max = (uint32_t)s->ss_live;
}

/* collect.c */
int  hka_init(hka_state *s, const char *path, const hkt_header *h);
/* inherit.c: after hka_init, before the pass: a forked child's trace
 * (header forked) starts from its parent's heap, read from the parent's
 * trace up to the fork when it is found (else s->inh.parent_note says why).
 * 0, or HKT_ERR_NOMEM. */
int  hka_inherit(hka_state *s);
/* collect.c, for inherit.c: a SuperSlab record at base (new_ss). */
hka_ss *hka_ss_new(hka_state *s, uint64_t base, uint64_t size);
int  hka_event(hka_state *s, const hkt_event *ev);
/* n events of a batch in order, block slots prefetched a few events ahead;
 * 0 or the first error. */
int  hka_events(hka_state *s, const hkt_event *ev, int n);
/* The whole pass: every event of r into s; returns what the reader said
 * last (0 end, <0 cut); *err < 0 if the analysis itself failed (memory). */
int  hka_pass(hka_state *s, hkt_reader *r, int progress, int *err);
/* After the last event (rc: what hkt_reader_next returned last): notes how
 * the trace ended, closes the timeline, groups leaks by caller. */
int  hka_finish(hka_state *s, hkt_reader *r, int rc);
/* Symbolize the leak callers and merge those on the same source line. */
void hka_leaks_symbolize(hka_state *s, hka_symbolizer *z);
void hka_free(hka_state *s);
uint64_t hka_class_size(const hka_state *s, uint32_t cls);
const char *hka_end_text(const hka_state *s, char *buf, size_t n);
hka_ss *hka_ss_of(const hka_state *s, uint64_t ptr);

/* symbolize.c: resolve with libdw from the trace's module map.
 * hka_sym_start right after hka_init: opens the header's modules and their
 * debug info on a thread of its own while the pass runs; hka_sym_ready
 * after the pass (before any lookup) joins it and adds the modules loaded
 * during the run. hka_sym_open is both at once. NULL: out of memory
 * (lookups then give nothing). */
hka_symbolizer *hka_sym_start(const hka_state *s);
void hka_sym_ready(hka_symbolizer *z, const hka_state *s);
hka_symbolizer *hka_sym_open(const hka_state *s);
/* addr is a return address; the lookup uses addr - 1. Strings live as
 * long as the symbolizer. */
void hka_sym_lookup(hka_symbolizer *z, uint64_t addr, hka_sym *out);
void hka_sym_close(hka_symbolizer *z);
/* "func (file:line)" or "module+0xoff" or "0xaddr". */
const char *hka_sym_format(const hka_sym *sym, uint64_t addr, char *buf, size_t n);

/* report writers: 0 or a negative hkt_err */
typedef struct hka_out {
  FILE *f;
  hkt_reader *r;                      /* for stacks; may be NULL */
  int width;                          /* text: columns */
  hka_symbolizer *sym;
  int stable;                         /* --stable: text and json without run-dependent fields */
} hka_out;

int hka_report_text(const hka_state *s, hka_out *o);
int hka_report_json(const hka_state *s, hka_out *o);
int hka_report_html(const hka_state *s, hka_out *o);
int hka_report_perfetto(const hka_state *s, hka_out *o);

/* shared formatting helpers (report_util.c) */
const char *hka_bytes(uint64_t b, char *buf, size_t n);   /* "1.5 MiB" */
const char *hka_secs(uint64_t ns, char *buf, size_t n);   /* "1.234 s" */
const char *hka_hold_name(uint32_t kind);
/* Leading frames of a stack that are inside hakmem itself (to skip). */
uint32_t hka_stack_skip(hka_symbolizer *z, const uint64_t *frames, uint32_t n);
/* A SuperSlab with a problem: detections, or released with blocks held. */
int hka_ss_bad(const hka_ss *ss);
/* Cross-thread pairs as [key, frees] sorted by key = alloc tid << 32 | free tid. */
uint64_t *hka_xthread_pairs(const hka_state *s, size_t *n);
/* --stable helpers: a path's last component; the command with its program
 * reduced to that (arguments kept). */
const char *hka_base_name(const char *path);
const char *hka_stable_cmd(const char *cmd, char *buf, size_t n);

int cmd_analyze(int argc, char **argv);

#endif /* HAKMEM_ANALYZE_H */
