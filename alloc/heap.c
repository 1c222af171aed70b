/* heap.c — per-thread heaps: caches, refill and flush, thread start/exit.
 *
 * A thread's heap owns SuperSlabs (one active per class, the rest on its
 * warm and full lists) and keeps a bounded cache of free blocks per class.
 * The malloc fast path is a pop from that cache and the free fast path a
 * push (entry.h; their tables and miss paths are at the end of this file);
 * everything else here runs once per batch. Only the owner touches
 * a SuperSlab's freelist and counts, so none of this takes a lock except to
 * take the remote queue while recording (hook.h explains why). */
#include <pthread.h>
#include <string.h>
#include "entry.h"

/* Sentinels: their caches are empty with cap 0, so the fast paths fall
 * through to the slow path, which sets the thread up. Zero-initialized, so
 * they live in .bss: the fast paths read them, and pages of zeros that are
 * only read are not resident, where 2 x 31 KiB of .data were (ru_maxrss).
 * Their thread index (no owner: a thread not set up owns nothing) and the
 * dead one's state are set at init (_hak_sentinels_init), before any
 * SuperSlab exists and before any thread can exit. */
hak_heap _hak_heap_empty;
hak_heap _hak_heap_dead;

void _hak_sentinels_init(void) {
  _hak_heap_empty.idx = HAK_NO_OWNER - 1;
  _hak_heap_dead.idx = HAK_NO_OWNER - 1;
  _hak_heap_dead.state = HAK_HEAP_DEAD;
}
__thread hak_heap *_hak_tls __attribute__((tls_model("initial-exec"))) = &_hak_heap_empty;
__thread uint32_t _hak_tls_idx __attribute__((tls_model("initial-exec"))) = HAK_NO_OWNER - 1;

hak_heap *_hak_heaps_all;
static hak_heap *heaps_free;
uint32_t _hak_next_tid;
static pthread_key_t exit_key;
static int exit_key_ok;

static void on_thread_exit(void *arg) {
  hak_heap *h = arg;
  if (h && h == _hak_tls && h->state == HAK_HEAP_LIVE) _hak_heap_exit(h);
}

void _hak_heap_setup_key(void) {
  exit_key_ok = pthread_key_create(&exit_key, on_thread_exit) == 0;
}

static uint32_t cache_cap(unsigned cls) {
  uint32_t cap = 32768u / _hak_cls_size[cls];
  if (cap < 8) cap = 8;
  cap = (uint32_t)((uint64_t)cap * _hak_cfg.cache_cap_scale / 100);
  if (cap < 1) cap = 1;
  if (cap > HAK_CACHE_MAX) cap = HAK_CACHE_MAX;
  return cap;
}

hak_heap *_hak_heap_init(void) {
  _hak_init();
  hak_heap *h = _hak_tls;
  if (h->state == HAK_HEAP_LIVE) return h;
  _hak_rec_wait();
  hak_lock(&_hak_global);
  if ((h = heaps_free)) {
    heaps_free = h->next_free;
    hak_heap *keep = h->next_all;
    memset(h, 0, sizeof *h);
    h->next_all = keep;
  } else if ((h = _hak_os_alloc_meta(sizeof *h))) {
    h->next_all = _hak_heaps_all;
    _hak_heaps_all = h;
  }
  if (!h) { hak_unlock(&_hak_global); return NULL; }
  h->idx = _hak_next_tid++;
  h->os_tid = _hak_os_tid();
  _hak_tls_idx = h->idx;
  atomic_fetch_add_explicit(&_hak_g.threads_started, 1, memory_order_relaxed);
  if (HAK_REC_ON()) {
    hkt_event ev = {.kind = HKT_EV_THREAD_START, .tid = h->idx, .cls = HKT_NO_CLASS, .aux = h->os_tid};
    _hak_emit(&ev);
  }
  hak_unlock(&_hak_global);
  for (unsigned c = 0; c < HAK_CLASSES; c++) h->cache[c].cap = cache_cap(c);
  h->state = HAK_HEAP_LIVE;
  _hak_tls = h;
  if (exit_key_ok) pthread_setspecific(exit_key, h);
  return h;
}

/* Fill the cache from ss: drain its remote queue, then its freelist, then
 * carve. Returns blocks moved. While recording this is one step under the
 * SuperSlab's lock and always one REFILL event, even when it finds nothing:
 * what it saw of the remote queue must be ordered against the pushes. */
static uint32_t refill_from(hak_heap *h, hak_ss *ss, unsigned cls) {
  hak_tcache *c = &h->cache[cls];
  int rec = HAK_REC_ON();
  if (rec) { _hak_rec_wait(); hak_lock(&ss->remote_lock); }
  uint32_t drained = _hak_ss_drain_remote(h, ss);
  if (HAK_INJ_ON()) _hak_inject_drain(h, ss, drained);
  uint32_t want = (c->cap + 1) / 2, n = 0;
  if (HAK_DBG_ON()) _hak_dbg_freelist(ss, want);
  /* Fill from the top of the slice down so the first pop gets the lowest
   * address: carving then walks memory forward. */
  void **out = c->slot + c->count;
  uint32_t avail = ss->nfree + (ss->capacity - ss->carved);
  if (want > avail) want = avail;
  while (n < want && ss->freelist) {
    void *p = ss->freelist;
    ss->freelist = *(void **)p;
    out[want - 1 - n++] = p;
  }
  ss->nfree -= n;
  uint32_t carved = ss->carved;
  while (n < want) out[want - 1 - n++] = ss->blocks + (size_t)carved++ * ss->block_size;
  HAK_WR(ss->carved, carved);
  HAK_WR(ss->carve_len, carved * ss->block_size);
  c->count += n;
  ss->live += n;
  if (n) _hak_stat_out(cls, n);
  h->ctr[cls].refills++;
  if (rec) {
    hkt_event ev = {.kind = HKT_EV_CACHE_REFILL, .tid = h->idx, .cls = cls, .size = n,
                    .aux = (uint64_t)(uintptr_t)ss, .aux2 = drained};
    _hak_emit(&ev);
    hak_unlock(&ss->remote_lock);
  }
  if (HAK_INJ_ON()) _hak_inject_refill(h, ss, cls, n);
  return n;
}

static void set_active(hak_heap *h, unsigned cls, hak_ss *ss) {
  h->active[cls] = ss;
  ss->where = HAK_SS_ACTIVE;
}

/* Reuse before carving: the active SuperSlab has no freed block left, only
 * memory never touched. If a warm one holds freed blocks (or a full one
 * blocks in its remote queue), it becomes the active one (the other goes
 * back to warm), so the pages a working set touches stay few: otherwise a
 * working set a little larger than one SuperSlab carves the whole of the
 * next one while the first one's freed blocks wait. Looks at a few only.
 * Unrecorded only (the caller): the glance at a remote queue is no ordered
 * step, and even a freelist is not the owner's alone once a bug has
 * struck (after an injected early release another thread's flush links
 * blocks into it), so a replay could decide otherwise; recorded runs carve
 * first, as they always did. (Replays of injected faults diverged at 1 in
 * ~200 with the freelist test while recording.) */
static hak_ss *reuse_first(hak_heap *h, unsigned cls, hak_ss *active) {
  hak_ss *w = h->warm[cls].head, *f = h->full[cls].head;
  for (int tries = 0; w && tries < 4; w = w->next, tries++)
    if (w->freelist) {
      _hak_sslist_remove(&h->warm[cls], w);
      goto found;
    }
  for (int tries = 0; f && tries < 2; f = f->next, tries++)
    if (atomic_load_explicit(&f->remote, memory_order_relaxed)) {
      _hak_sslist_remove(&h->full[cls], f);
      w = f;
      goto found;
    }
  return active;
found:
  _hak_sslist_push(&h->warm[cls], active, HAK_SS_WARM);
  set_active(h, cls, w);
  return w;
}

/* The cache of cls is empty: refill it and return one block. */
void *_hak_refill_alloc(hak_heap *h, unsigned cls) {
  if (unlikely(h->state != HAK_HEAP_LIVE)) {
    if (!(h = _hak_heap_init())) return NULL;
    if (h->cache[cls].count) return h->cache[cls].slot[--h->cache[cls].count];
  }
  hak_tcache *c = &h->cache[cls];
  for (;;) {
    hak_ss *ss = h->active[cls];
    if (ss && !HAK_REC_ON() && !ss->freelist && ss->carved < ss->capacity) ss = reuse_first(h, cls, ss);
    if (ss) {
      if (refill_from(h, ss, cls)) return c->slot[--c->count];
      _hak_sslist_push(&h->full[cls], ss, HAK_SS_FULL);
      h->active[cls] = NULL;
    }
    if ((ss = h->warm[cls].head)) {
      _hak_sslist_remove(&h->warm[cls], ss);
      set_active(h, cls, ss);
      continue;
    }
    /* A few full ones may have had blocks freed remotely. Unrecorded, a
     * glance at the queue decides; recorded, each try is an ordered step. */
    hak_ss *next;
    int tries = 0;
    for (ss = h->full[cls].head; ss && tries < 4; ss = next, tries++) {
      next = ss->next;
      if (!HAK_REC_ON() && !atomic_load_explicit(&ss->remote, memory_order_relaxed)) continue;
      _hak_sslist_remove(&h->full[cls], ss);
      set_active(h, cls, ss);
      if (refill_from(h, ss, cls)) return c->slot[--c->count];
      _hak_sslist_push(&h->full[cls], ss, HAK_SS_FULL);
      h->active[cls] = NULL;
    }
    if (!(ss = _hak_ss_acquire(h, cls))) return NULL;
    set_active(h, cls, ss);
  }
}

/* Give blocks back to their SuperSlabs, keeping the `keep` most recently
 * freed (the top of the cache) for reuse. */
void _hak_flush(hak_heap *h, unsigned cls, uint32_t keep) {
  hak_tcache *c = &h->cache[cls];
  if (c->count <= keep) return;
  uint32_t n = c->count - keep;
  h->ctr[cls].flushes++;
  if (HAK_REC_ON()) {
    hkt_event ev = {.kind = HKT_EV_CACHE_FLUSH, .tid = h->idx, .cls = cls, .size = n};
    _hak_emit(&ev);
  }
  for (uint32_t i = 0; i < n; i++) {
    void *p = c->slot[i];
    hak_ss *ss = _hak_ss_of(p);
    *(void **)p = ss->freelist;
    ss->freelist = p;
    ss->nfree++;
    ss->live--;
    if (ss->where == HAK_SS_FULL) {
      _hak_sslist_remove(&h->full[cls], ss);
      _hak_sslist_push(&h->warm[cls], ss, HAK_SS_WARM);
    }
    if (ss->live == 0 && ss->where == HAK_SS_WARM) {
      _hak_sslist_remove(&h->warm[cls], ss);
      _hak_ss_retire(h, ss);
    }
  }
  memmove(c->slot, c->slot + n, keep * sizeof(void *));
  c->count = keep;
  _hak_stat_out(cls, -(int64_t)n);
  if (HAK_INJ_ON()) _hak_inject_flush(h, cls);
}

/* Drain remote frees into ss (ordered while recording) and retire it if that
 * emptied it. Returns 1 if ss is gone. */
static int settle(hak_heap *h, hak_ss *ss) {
  if (HAK_REC_ON()) {
    _hak_rec_wait();
    hak_lock(&ss->remote_lock);
    if (_hak_ss_drain_remote(h, ss) == 0) {
      /* Finding the queue empty is an observation too: ordered, so that
       * replay does not drain a push that came after it. */
      hkt_event ev = {.kind = HKT_EV_REMOTE_DRAIN, .tid = h->idx, .cls = ss->cls,
                      .aux = (uint64_t)(uintptr_t)ss, .size = 0};
      _hak_emit(&ev);
    }
    hak_unlock(&ss->remote_lock);
  } else {
    _hak_ss_drain_remote(h, ss);
  }
  if (ss->live == 0) { _hak_ss_retire(h, ss); return 1; }
  return 0;
}

/* Thread exit: caches back to the SuperSlabs, empty SuperSlabs retired,
 * the rest left in the shared pool for adoption. */
void _hak_heap_exit(hak_heap *h) {
  if (HAK_DBG_ON()) _hak_dbg_quarantine_drain();
  if (HAK_REC_ON()) {
    hkt_event ev = {.kind = HKT_EV_THREAD_EXIT, .tid = h->idx, .cls = HKT_NO_CLASS, .aux = h->os_tid};
    _hak_emit(&ev);
  }
  for (unsigned cls = 0; cls < HAK_CLASSES; cls++) {
    _hak_flush(h, cls, 0);
    hak_ss *ss = h->active[cls];
    h->active[cls] = NULL;
    if (ss) { ss->where = HAK_SS_NOWHERE; if (!settle(h, ss)) _hak_ss_abandon(h, ss); }
    hak_sslist *lists[2] = {&h->warm[cls], &h->full[cls]};
    for (int k = 0; k < 2; k++) {
      while ((ss = lists[k]->head)) {
        _hak_sslist_remove(lists[k], ss);
        if (!settle(h, ss)) _hak_ss_abandon(h, ss);
      }
    }
  }
  /* No wait() here: this section emits nothing (counters, the heap onto
   * the free list; a new thread's index does not come from its heap), so
   * replay need not order it, and an exited replay thread must not wait
   * for an event of its own that will never come. */
  hak_lock(&_hak_global);
  for (unsigned cls = 0; cls < HAK_CLASSES; cls++) {
    hak_class_ctr *d = &_hak_g.dead[cls], *s = &h->ctr[cls];
    d->allocs += h->cache[cls].allocs; d->frees += h->cache[cls].frees; d->refills += s->refills;
    d->flushes += s->flushes; d->remote_frees += s->remote_frees; d->remote_drains += s->remote_drains;
  }
  h->state = HAK_HEAP_DEAD;
  h->next_free = heaps_free;
  heaps_free = h;
  atomic_fetch_add_explicit(&_hak_g.threads_exited, 1, memory_order_relaxed);
  hak_unlock(&_hak_global);
  _hak_tls = &_hak_heap_dead;
}

uint32_t _hak_thread_index(void) {
  if (_hak_tls->state == HAK_HEAP_EMPTY) _hak_heap_init();
  return _hak_tls_idx;
}

void hak_thread_flush(void) {
  hak_heap *h = _hak_tls;
  if (h->state != HAK_HEAP_LIVE) return;
  if (HAK_DBG_ON()) _hak_dbg_quarantine_drain();
  for (unsigned cls = 0; cls < HAK_CLASSES; cls++) _hak_flush(h, cls, 0);
}

/* ---- the fast paths' tables and misses (entry.h) ---- */

#define TC HAK_TC_OFF
const uint16_t _hak_tc_tiny[HAK_TINY_MAX / 8 + 1] = {   /* by (size + 7) / 8 */
  [0 ... 1] = TC(0), [2] = TC(1), [3 ... 4] = TC(2), [5 ... 8] = TC(3),
  [9 ... 16] = TC(4), [17 ... 32] = TC(5), [33 ... 64] = TC(6), [65 ... 128] = TC(7),
};
const uint16_t _hak_tc_mid[HAK_MID_MAX / 256 + 1] = {   /* by (size + 255) / 256, for size > 1024 */
  [0 ... 5] = TC(8), [6] = TC(9), [7] = TC(10), [8] = TC(11),
  [9 ... 10] = TC(12), [11 ... 12] = TC(13), [13 ... 14] = TC(14), [15 ... 16] = TC(15),
  [17 ... 20] = TC(16), [21 ... 24] = TC(17), [25 ... 28] = TC(18), [29 ... 32] = TC(19),
  [33 ... 40] = TC(20), [41 ... 48] = TC(21), [49 ... 56] = TC(22), [57 ... 64] = TC(23),
  [65 ... 80] = TC(24), [81 ... 96] = TC(25), [97 ... 112] = TC(26), [113 ... 128] = TC(27),
};
#undef TC
_Static_assert(HAK_TC_OFF(HAK_CLASSES - 1) <= UINT16_MAX, "a cache's offset fits the tables and hak_ss.tc_off");

/* Debug level 1's own fast paths: a cache pop or push as at level 0, plus
 * the block's state byte, reached from the SuperSlab's first line (which
 * the free path reads anyway) with no call: the state table is the only
 * extra line touched. Anything unusual goes to debug.c, which reports. */

/* The state byte of p, a block popped from this thread's cache, if it is
 * of a SuperSlab this thread owns (not so only after an injected early
 * release: debug.c then decides); else NULL. */
static inline _Atomic uint8_t *popped_state(void *p) {
  uint64_t off = (uint64_t)((char *)p - _hak_arena.ss_base);
  if (unlikely(off >= HAK_FAST_RD(_hak_arena.ss_top))) return NULL;
  hak_ss *ss = HAK_RD(_hak_arena.ssmap[off >> HAK_CHUNK_LG]);
  if (unlikely(!ss || !ss->dbg_state || HAK_RD(ss->owner) != _hak_tls->idx)) return NULL;
  return ss->dbg_state + _hak_block_at(ss, (uint64_t)((char *)p - ss->blocks));
}

/* Recording (or replaying) without debug: the fast paths' cache pop and
 * push, and the call's event (a jump to the recorder); anything else on
 * the slow path, as before. Same heap changes as _hak_malloc_slow and
 * free_recorded make for these calls, at about half the instructions. */
void *_hak_malloc_miss(size_t size, void *caller) {
  if (_hak_bypassing()) return _hak_bypass_alloc(size, 16);
  if (HAK_INSTR_REC() && likely(size <= HAK_MID_MAX)) {
    unsigned cls = _hak_size_class(size);
    hak_tcache *tc = &_hak_tls->cache[cls];
    uint32_t n = tc->count;
    if (likely(n)) {   /* 0 also on the sentinel heaps: the first event of a thread goes slow */
      tc->count = --n;
      tc->allocs++;
      void *p = tc->slot[n];
      _hak_emit_packed(HAK_CALL_META(HKT_EV_MALLOC, 0, cls, 0), p, size, 0, 0, caller);
      return p;
    }
  }
  if (HAK_INSTR_DBG1() && size <= HAK_MID_MAX) {
    unsigned cls = _hak_size_class(size);
    hak_tcache *tc = &_hak_tls->cache[cls];
    if (tc->count) {
      void *p = tc->slot[--tc->count];
      tc->allocs++;
      _Atomic uint8_t *st = popped_state(p);
      uint8_t s = st ? atomic_load_explicit(st, memory_order_relaxed) : HAK_BLK_USED;
      if (likely(s == HAK_BLK_FREE || s == HAK_BLK_FRESH)) atomic_store_explicit(st, HAK_BLK_USED, memory_order_relaxed);
      else _hak_dbg_track(p, size, cls);   /* reports a block still in use */
      return p;
    }
  }
  return _hak_malloc_slow(size, caller);
}

void _hak_free_miss(void *p, void *caller) {
  hak_ss *ss;
  hak_tcache *tc;
  /* a block of a SuperSlab this thread owns: no other thread can change
   * that SuperSlab (api.c, free_recorded), so no lock and no re-check */
  if (HAK_INSTR_REC() && (tc = _hak_free_cache(p, &ss))) {
    _hak_emit_packed(HAK_CALL_META(HKT_EV_FREE, 0, ss->cls, 0), p, 0, 0, 0, caller);
    tc->slot[tc->count++] = p;
    tc->frees++;
    return;
  }
  if (HAK_INSTR_DBG1() && (tc = _hak_free_cache(p, &ss))) {
    _Atomic uint8_t *st = ss->dbg_state;
    if (likely(st)) st += _hak_block_at(ss, (uint64_t)((char *)p - ss->blocks));
    if (likely(st && atomic_load_explicit(st, memory_order_relaxed) == HAK_BLK_USED))
      atomic_store_explicit(st, HAK_BLK_FREE, memory_order_relaxed);
    else if (_hak_dbg_free(p, ss))
      return;   /* reported, not freed */
    tc->slot[tc->count++] = p;
    tc->frees++;
    return;
  }
  _hak_free_slow(p, caller);
}
