/* internal.h — types and cross-file functions of the allocator.
 *
 * Layers, bottom up (each file says more):
 *   os.c        the only place that talks to the kernel (mmap, madvise, write)
 *   config.c    HAKMEM_* settings, read once at init, never allocating
 *   arena.c     the reserved address range: SuperSlab chunks and large spans,
 *               the registry (chunk map) that says what lives where
 *   superslab.c SuperSlabs: carve, register/unregister, empty cache, shared pool
 *   heap.c      per-thread heaps: caches, refill/flush, remote queues, thread exit
 *   large.c     page-granular blocks above the mid classes
 *   api.c       the malloc family with glibc semantics; shim.c exports it as malloc
 *   stats.c     counters; hook.c the recorder hook; init.c start-up and fork
 *
 * Locking: one global lock (_hak_global) orders everything shared and rare
 * (arena, registry, pools, large spans, thread registration). Per-thread
 * state needs none. Remote frees are a lock-free stack per SuperSlab; while a
 * recorder is attached they also take the SuperSlab's lock so that their
 * sequence numbers follow their effects (see hook.h). */
#ifndef HAK_INTERNAL_H
#define HAK_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "hakmem.h"
#include "hook.h"

#define likely(x)   __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define HAK_INTERNAL __attribute__((visibility("hidden")))
/* Fields one thread writes and others read without a lock (a SuperSlab's
 * owner and carve mark, the arena tops, the registry) go through these:
 * plain moves on x86, and visible as intended to the thread sanitizer. */
#define HAK_RD(x)    __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define HAK_WR(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

/* ---- sizes ---- */
#define HAK_PAGE           4096u
#define HAK_TINY_MAX       1024u        /* C0..C7: 8,16,...,1024 */
#define HAK_TINY_CLASSES   8
#define HAK_MID_MAX        32768u       /* C8..C27: 4 steps per doubling */
#define HAK_CLASSES        28
#define HAK_SS_LG_TINY     20           /* 1 MiB SuperSlabs for tiny classes */
#define HAK_SS_LG_MID      21           /* 2 MiB for mid classes */
#define HAK_CHUNK_LG       20           /* registry granularity: 1 MiB */
#define HAK_SS_HEADER      HAK_PAGE     /* blocks start one page in: pow2 blocks stay naturally aligned */
#define HAK_SS_MAGIC       0x48414b53u  /* "HAKS" */
#define HAK_NO_OWNER       0xffffffffu
#define HAK_CACHE_MAX      128

/* ---- lock: a futex mutex (0 free, 1 held, 2 held with waiters) that
 * spins briefly first; never allocates. Waiters sleep in the kernel rather
 * than yield: on two cores a yielding waiter mostly steals the holder's
 * time slice. ---- */
typedef struct { _Atomic int v; } hak_lock_t;
void _hak_lock_slow(hak_lock_t *l);
void _hak_unlock_wake(hak_lock_t *l);
static inline void hak_lock(hak_lock_t *l) {
  int z = 0;
  if (likely(atomic_compare_exchange_strong_explicit(&l->v, &z, 1, memory_order_acquire, memory_order_relaxed))) return;
  _hak_lock_slow(l);
}
static inline void hak_unlock(hak_lock_t *l) {
  if (unlikely(atomic_exchange_explicit(&l->v, 0, memory_order_release) == 2)) _hak_unlock_wake(l);
}

/* ---- SuperSlab: a naturally aligned 1 or 2 MiB region of one class ---- */
/* Laid out by who touches what: the first line is read by every thread
 * that frees into this SuperSlab and changes rarely; the owner's working
 * state and the remote queue have lines of their own, so a remote free does
 * not miss on a line the owner just wrote (false sharing). */
typedef struct hak_ss {
  /* line 0: read by any freeing thread */
  uint32_t magic;
  uint8_t  lg_size;           /* 20 or 21 */
  uint8_t  pow2;              /* block size is a power of two: then `shift` = log2 */
  uint16_t cls;
  uint32_t id;                /* registry id, never reused */
  uint32_t owner;             /* thread index, HAK_NO_OWNER when abandoned */
  uint32_t block_size;
  uint32_t block_mask;        /* pow2: block_size-1; else ~0, so that the fast free takes block 0 only */
  uint32_t recip;             /* non-pow2: ceil(2^32 / block_size) */
  uint32_t capacity;          /* blocks that fit */
  uint8_t  shift;             /* log2(block_size) for pow2 classes, else 0 */
  uint8_t  pad0;
  uint16_t tc_off;            /* offsetof(hak_heap, cache[cls]): the fast free's cache, no multiply */
  uint32_t reg_tid;           /* thread that registered it (for reports) */
  char    *blocks;            /* first block */
  uint64_t carve_len;         /* carved * block_size: the fast free's bound, in bytes from blocks */
  _Atomic uint8_t *dbg_state; /* debug level 1+: the blocks' state bytes (debug.c), else NULL */
  /* line 1: the owner's */
  uint32_t carved __attribute__((aligned(64)));  /* blocks handed out of the bump area so far */
  uint32_t live;              /* carved and not on `freelist`: users, caches, remote queues */
  uint32_t nfree;             /* on `freelist` */
  uint8_t  where;             /* which list holds it: enum hak_ss_where */
  uint8_t  pad1[3];
  void    *freelist;          /* owner-only intrusive list */
  struct hak_ss *next, *prev; /* in the owner's warm list, the shared pool or the empty cache */
  /* line 2: the remote queue */
  _Atomic(void *) remote __attribute__((aligned(64)));  /* lock-free stack of blocks freed by other threads */
  hak_lock_t remote_lock;     /* taken only while a recorder is attached */
} hak_ss;

_Static_assert(offsetof(hak_ss, dbg_state) + sizeof(void *) <= 64, "what a freeing thread reads is on line 0");

enum hak_ss_where { HAK_SS_NOWHERE, HAK_SS_ACTIVE, HAK_SS_WARM, HAK_SS_FULL, HAK_SS_SHARED, HAK_SS_EMPTY };

typedef struct hak_sslist { hak_ss *head; uint32_t n; } hak_sslist;

/* ---- per-thread heap ---- */
typedef struct hak_tcache {
  uint32_t count, cap;
  uint64_t allocs, frees;         /* calls served here: on the cache's own line */
  void *slot[HAK_CACHE_MAX];
} hak_tcache;

typedef struct hak_class_ctr {  /* per-thread, summed by stats.c */
  uint64_t allocs, frees, refills, flushes, remote_frees, remote_drains;
} hak_class_ctr;

typedef struct hak_heap {
  uint32_t idx;                 /* thread index (events, SuperSlab owner) */
  uint32_t state;               /* enum hak_heap_state */
  uint64_t os_tid;
  hak_tcache cache[HAK_CLASSES];
  hak_ss *active[HAK_CLASSES];  /* carving from here */
  hak_sslist warm[HAK_CLASSES]; /* owned, with blocks on their own freelist or uncarved */
  hak_sslist full[HAK_CLASSES]; /* owned, nothing left but what remote frees bring back */
  hak_class_ctr ctr[HAK_CLASSES];
  struct hak_heap *next_all;    /* every heap ever made (stats, fork) */
  struct hak_heap *next_free;
} hak_heap;

enum hak_heap_state { HAK_HEAP_EMPTY, HAK_HEAP_LIVE, HAK_HEAP_DEAD };

/* ---- configuration (config.c) ---- */
typedef struct hak_config {
  uint64_t arena_base;          /* 0: randomized */
  uint64_t arena_reserve;       /* bytes of address space per region */
  int stats;                    /* HAKMEM_STATS */
  int on_error_continue;        /* HAKMEM_ON_ERROR=continue */
  int debug;                    /* HAKMEM_DEBUG 0..3 */
  uint32_t ss_cache;            /* empty SuperSlabs kept per class */
  uint32_t cache_cap_scale;     /* HAKMEM_TCACHE: percent of the default cache size */
  const char *trace;            /* HAKMEM_TRACE (read by trace/) */
  int lttng;                    /* HAKMEM_LTTNG */
  uint64_t quarantine;          /* HAKMEM_QUARANTINE: bytes held per thread at debug 3 */
} hak_config;
extern hak_config _hak_cfg;
void   _hak_config_read(void);
__attribute__((visibility("default"))) size_t _hak_config_describe(char *buf, size_t n);
uint64_t _hak_parse_u64(const char *s, int *ok);   /* dec, 0x hex, K/M/G suffix */

/* ---- os.c ---- */
void *_hak_os_reserve(uint64_t hint, size_t size, int fixed);
int   _hak_os_commit(void *p, size_t size);
void  _hak_os_decommit(void *p, size_t size);
void  _hak_os_release(void *p, size_t size);
void *_hak_os_alloc_meta(size_t size);        /* zeroed metadata pages */
void  _hak_os_write(int fd, const char *s, size_t n);
void  _hak_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  /* "hakmem: ..." to stderr */
int   _hak_fmt(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t _hak_os_tid(void);
uint64_t _hak_os_random(void);

/* ---- arena.c: address space and registry ---- */
typedef struct hak_arena {
  char    *ss_base;        /* SuperSlab region: chunks of 1 MiB */
  uint64_t ss_size;        /* reserved */
  uint64_t ss_top;         /* bump offset */
  uint64_t ss_committed;   /* mprotect'ed RW below this offset */
  char    *lg_base;        /* large region: pages */
  uint64_t lg_size, lg_top, lg_committed;
  hak_ss **ssmap;          /* chunk index -> SuperSlab (both chunks of a 2 MiB one) */
  uint32_t *pgmap;         /* large page index -> span word (large.c) */
} hak_arena;
extern hak_arena _hak_arena HAK_INTERNAL;   /* hidden: the fast free reads it rip-relative, not through the GOT */
extern hak_lock_t _hak_global;
int   _hak_arena_init(void);
void *_hak_arena_ss_alloc(unsigned lg);        /* naturally aligned, global lock held */
void  _hak_arena_ss_free(void *p, unsigned lg);
int   _hak_arena_lg_grow(uint64_t need_top);   /* commit the large region up to need_top */

static inline hak_ss *_hak_ss_of(const void *p) {
  uint64_t off = (uint64_t)((const char *)p - _hak_arena.ss_base);
  if (off >= HAK_RD(_hak_arena.ss_top)) return NULL;
  return HAK_RD(_hak_arena.ssmap[off >> HAK_CHUNK_LG]);
}
/* Is ss still the registered SuperSlab `id` (not unregistered, nor a new
 * one made at the same base)? Exact under ss->remote_lock while recording:
 * register and unregister change the registry under that lock too. */
static inline int _hak_ss_is(const hak_ss *ss, uint32_t id) {
  uint64_t off = (uint64_t)((const char *)ss - _hak_arena.ss_base);
  return HAK_RD(_hak_arena.ssmap[off >> HAK_CHUNK_LG]) == ss && HAK_RD(ss->magic) == HAK_SS_MAGIC &&
         HAK_RD(ss->id) == id;
}
static inline int _hak_in_large(const void *p) {
  return (uint64_t)((const char *)p - _hak_arena.lg_base) < HAK_RD(_hak_arena.lg_top);
}

/* ---- size classes (api.c) ---- */
extern const uint8_t _hak_tiny_cls[HAK_TINY_MAX / 8 + 1];
extern const uint32_t _hak_cls_size[HAK_CLASSES];
static inline unsigned _hak_size_class(size_t size) {
  if (likely(size <= HAK_TINY_MAX)) return _hak_tiny_cls[(size + 7) >> 3];
  /* mid: 4 classes per doubling from 1 KiB */
  unsigned lg = 63 - __builtin_clzl(size - 1);        /* size in (2^lg, 2^(lg+1)] */
  unsigned step = (unsigned)((size - 1) >> (lg - 2)) & 3;
  return HAK_TINY_CLASSES + (lg - 10) * 4 + step;
}

/* The block of ss at byte offset off from ss->blocks, rounded down: no
 * division (the shift, or the reciprocal). */
static inline uint32_t _hak_block_at(const hak_ss *ss, uint64_t off) {
  return (uint32_t)(ss->pow2 ? off >> ss->shift : (off * ss->recip) >> 32);
}

/* Block index of p in ss, or -1 if p is not at a block boundary. */
static inline int64_t _hak_block_index(const hak_ss *ss, const void *p) {
  uint64_t off = (uint64_t)((const char *)p - ss->blocks);
  uint64_t idx = _hak_block_at(ss, off);
  if ((uint64_t)idx * ss->block_size != off) return -1;
  return idx < HAK_RD(ss->carved) ? (int64_t)idx : -1;
}

/* ---- superslab.c ---- */
hak_ss *_hak_ss_acquire(struct hak_heap *h, unsigned cls);   /* adopt, reuse or create; global lock taken inside */
void    _hak_ss_retire(struct hak_heap *h, hak_ss *ss);      /* owner: empty -> cache or release */
void    _hak_ss_abandon(struct hak_heap *h, hak_ss *ss);     /* owner exits with live blocks */
void    _hak_ss_unregister(struct hak_heap *h, hak_ss *ss);  /* registry and event; global lock held */
uint32_t _hak_ss_drain_remote(struct hak_heap *h, hak_ss *ss); /* owner: take the remote queue back */
/* 0 pushed; -1 (only while recording) ss is no longer SuperSlab `id`: not pushed. */
int     _hak_ss_push_remote(struct hak_heap *h, hak_ss *ss, void *p, uint32_t id);
uint64_t _hak_ss_emit(uint16_t kind, uint32_t tid, const hak_ss *ss, uint64_t aux3);  /* returns the event's seq */
extern uint32_t _hak_ss_next_id;
extern hak_sslist _hak_shared[HAK_CLASSES], _hak_empty[HAK_CLASSES];
void _hak_sslist_push(hak_sslist *l, hak_ss *ss, uint8_t where);
void _hak_sslist_remove(hak_sslist *l, hak_ss *ss);

/* ---- heap.c ---- */
/* Initial-exec, as the linker makes them in libhakmem.so anyway: with the
 * default model for -fPIC the compiler plans a __tls_get_addr call at each
 * use and keeps values in callee-saved registers around it, so the fast
 * paths would need a frame. */
#define HAK_TLS_IE __attribute__((tls_model("initial-exec")))
extern __thread hak_heap *_hak_tls HAK_TLS_IE;      /* &_hak_heap_empty until first use, &_hak_heap_dead after exit */
extern __thread uint32_t _hak_tls_idx HAK_TLS_IE;   /* thread index; kept after exit for late frees' events */
extern hak_heap _hak_heap_empty, _hak_heap_dead;
void _hak_sentinels_init(void);                   /* heap.c, from init */
hak_heap *_hak_heap_init(void);                    /* first call on this thread */
void *_hak_refill_alloc(hak_heap *h, unsigned cls);
void  _hak_flush(hak_heap *h, unsigned cls, uint32_t keep);
void  _hak_heap_exit(hak_heap *h);

extern hak_heap *_hak_heaps_all;
extern uint32_t _hak_next_tid;

/* ---- bypass.c: the arena of the recorder's own library loads ---- */
extern __thread int _hak_bypass_depth HAK_TLS_IE;
extern char *_hak_bypass_lo HAK_INTERNAL, *_hak_bypass_hi HAK_INTERNAL;
static inline bool _hak_bypassing(void) { return __builtin_expect(_hak_bypass_depth != 0, 0); }
static inline bool _hak_bypass_owns(const void *p) {
  return __builtin_expect((const char *)p >= _hak_bypass_lo && (const char *)p < _hak_bypass_hi, 0);
}
void  *_hak_bypass_alloc(size_t size, size_t align);
void  *_hak_bypass_realloc(void *p, size_t size, void *caller);
size_t _hak_bypass_usable(const void *p);

/* ---- large.c ---- */
void  *_hak_large_alloc(size_t size, size_t align);
int    _hak_large_free(void *p);                      /* 0 ok, -1 not a large block */
size_t _hak_large_usable(const void *p);              /* 0 if not a large block */
int    _hak_large_resize(void *p, size_t size);       /* in place: 0 ok, -1 cannot */

/* ---- api.c ---- */
void _hak_invalid_free(const void *p, unsigned det, const hak_ss *ss);

/* ---- init.c ---- */
extern _Atomic int _hak_inited;
void _hak_init_slow(void);
static inline void _hak_init(void) {
  if (unlikely(!atomic_load_explicit(&_hak_inited, memory_order_acquire))) _hak_init_slow();
}

/* ---- stats.c ---- */
typedef struct hak_gstats {
  _Atomic uint64_t large_allocs, large_frees, large_live, large_peak;
  _Atomic uint64_t ss_live, ss_peak, ss_reg, ss_unreg, ss_adopted;
  _Atomic uint64_t os_committed, os_commits, os_decommits;
  _Atomic uint64_t invalid_frees, threads_started, threads_exited;
  _Atomic int64_t  out[HAK_CLASSES];       /* blocks out of SuperSlabs */
  _Atomic uint64_t out_peak[HAK_CLASSES];
  _Atomic uint64_t ss_reg_cls[HAK_CLASSES], ss_unreg_cls[HAK_CLASSES];
  hak_class_ctr dead[HAK_CLASSES];         /* counters of exited heaps, global lock */
  _Atomic uint64_t late_frees[HAK_CLASSES];  /* frees by threads after their exit */
  int report_fd;                            /* a private dup of stderr for the exit report */
} hak_gstats;
extern hak_gstats _hak_g;
static inline void _hak_stat_out(unsigned cls, int64_t d) {
  int64_t v = atomic_fetch_add_explicit(&_hak_g.out[cls], d, memory_order_relaxed) + d;
  if (d > 0 && (uint64_t)v > atomic_load_explicit(&_hak_g.out_peak[cls], memory_order_relaxed))
    atomic_store_explicit(&_hak_g.out_peak[cls], (uint64_t)v, memory_order_relaxed);
}
static inline void _hak_stat_max(_Atomic uint64_t *peak, uint64_t v) {
  if (v > atomic_load_explicit(peak, memory_order_relaxed)) atomic_store_explicit(peak, v, memory_order_relaxed);
}

/* ---- event helpers ---- */
static inline void _hak_emit(hkt_event *ev) {
  const hak_recorder *r = _hak_rec_get();
  if (r) r->emit(r->ctx, ev);
}
static inline hak_heap *_hak_heap(void) { return _hak_tls; }
static inline uint32_t _hak_tid(void) { return _hak_tls_idx; }

#include "debug.h"   /* debug checks and fault injection: their call sites */

#endif /* HAK_INTERNAL_H */
