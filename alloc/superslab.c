/* superslab.c — SuperSlabs: create and register, adopt, park, release.
 *
 * Life of a SuperSlab:
 *
 *   arena chunk --create+register--> owned by a thread (active or warm)
 *        ^                              |  owner exits, blocks still live
 *        |                              v
 *     release <--unregister-- empty cache <--park-- shared pool --adopt--> owned
 *   (decommit)   (cache full)     ^ (live == 0)          (owner none)
 *                                  `--------- owner: live == 0 ----'
 *
 * `live` counts blocks carved and not on the SuperSlab's own freelist: in
 * use, in a thread cache, or in flight to / sitting in the remote queue. Only
 * the owner changes it (remote frees are counted back when drained), and a
 * SuperSlab is parked or released only when its owner sees live == 0: no
 * block of it is anywhere else. That is the release invariant, by
 * construction; _hak_ss_release checks it anyway. Every transition that
 * another thread can observe is an event emitted under the global lock. */
#include <string.h>
#include "internal.h"

uint32_t _hak_ss_next_id = 1;
hak_sslist _hak_shared[HAK_CLASSES], _hak_empty[HAK_CLASSES];

void _hak_sslist_push(hak_sslist *l, hak_ss *ss, uint8_t where) {
  ss->prev = NULL;
  ss->next = l->head;
  if (l->head) l->head->prev = ss;
  l->head = ss;
  l->n++;
  ss->where = where;
}

void _hak_sslist_remove(hak_sslist *l, hak_ss *ss) {
  if (ss->prev) ss->prev->next = ss->next; else l->head = ss->next;
  if (ss->next) ss->next->prev = ss->prev;
  ss->next = ss->prev = NULL;
  l->n--;
  ss->where = HAK_SS_NOWHERE;
}

uint64_t _hak_ss_emit(uint16_t kind, uint32_t tid, const hak_ss *ss, uint64_t aux3) {
  hkt_event ev = {0};
  ev.seq = HAK_NO_SEQ;
  ev.kind = kind;
  ev.tid = tid;
  ev.cls = ss->cls;
  ev.ptr = (uint64_t)(uintptr_t)ss;
  ev.size = 1ull << ss->lg_size;
  ev.aux = ss->owner;
  ev.aux2 = ss->id;
  ev.aux3 = aux3;
  _hak_emit(&ev);
  return ev.seq;
}

static hak_ss *ss_create(hak_heap *h, unsigned cls) {
  unsigned lg = cls < HAK_TINY_CLASSES ? HAK_SS_LG_TINY : HAK_SS_LG_MID;
  char *base = _hak_arena_ss_alloc(lg);
  if (!base) return NULL;
  hak_ss *ss = (hak_ss *)base;
  uint32_t bs = _hak_cls_size[cls];
  ss->magic = HAK_SS_MAGIC;
  ss->lg_size = (uint8_t)lg;
  ss->cls = (uint16_t)cls;
  ss->id = _hak_ss_next_id++;
  HAK_WR(ss->owner, h->idx);
  ss->block_size = bs;
  ss->pow2 = (bs & (bs - 1)) == 0;
  ss->block_mask = ss->pow2 ? bs - 1 : ~0u;
  ss->recip = (uint32_t)(((1ull << 32) + bs - 1) / bs);
  ss->blocks = base + HAK_SS_HEADER;
  ss->carve_len = 0;
  ss->dbg_state = NULL;
  ss->shift = ss->pow2 ? (uint8_t)__builtin_ctz(bs) : 0;
  ss->tc_off = (uint16_t)(offsetof(hak_heap, cache) + cls * sizeof(hak_tcache));
  ss->capacity = (uint32_t)(((1ull << lg) - HAK_SS_HEADER) / bs);
  ss->reg_tid = h->idx;
  /* Register: both 1 MiB chunks of a 2 MiB SuperSlab map to it. While
   * recording, the registry change and its event are one step under the
   * SuperSlab's remote lock, as a remote free's check (_hak_ss_is). */
  int rec = HAK_REC_ON();
  uint64_t seq = HAK_NO_SEQ;
  if (rec) hak_lock(&ss->remote_lock);
  uint64_t idx = (uint64_t)(base - _hak_arena.ss_base) >> HAK_CHUNK_LG;
  for (unsigned i = 0; i < (1u << (lg - HAK_CHUNK_LG)); i++) HAK_WR(_hak_arena.ssmap[idx + i], ss);
  if (rec) {
    seq = _hak_ss_emit(HKT_EV_SS_REGISTER, h->idx, ss, 0);
    hak_unlock(&ss->remote_lock);
  }
  uint64_t n = atomic_fetch_add_explicit(&_hak_g.ss_live, 1, memory_order_relaxed) + 1;
  _hak_stat_max(&_hak_g.ss_peak, n);
  atomic_fetch_add_explicit(&_hak_g.ss_reg, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&_hak_g.ss_reg_cls[cls], 1, memory_order_relaxed);
  _hak_dbg_ss_registered(ss, seq);
  return ss;
}

/* Take ss out of the registry (global lock held), with its event: while
 * recording one step under its remote lock, so that a remote free checking
 * it (_hak_ss_is, under that lock) is ordered before or after. */
void _hak_ss_unregister(hak_heap *h, hak_ss *ss) {
  int rec = HAK_REC_ON();
  uint64_t seq = HAK_NO_SEQ;
  if (rec) hak_lock(&ss->remote_lock);
  uint64_t idx = (uint64_t)((char *)ss - _hak_arena.ss_base) >> HAK_CHUNK_LG;
  for (unsigned i = 0; i < (1u << (ss->lg_size - HAK_CHUNK_LG)); i++) HAK_WR(_hak_arena.ssmap[idx + i], NULL);
  if (rec) seq = _hak_ss_emit(HKT_EV_SS_UNREGISTER, h->idx, ss, ss->live);
  HAK_WR(ss->magic, 0);
  if (rec) hak_unlock(&ss->remote_lock);
  _hak_dbg_ss_unregistered(ss, h->idx, seq);
}

/* Unregister and give back to the arena. Global lock held. */
static void ss_release(hak_heap *h, hak_ss *ss) {
  if (unlikely(ss->live != 0 || atomic_load_explicit(&ss->remote, memory_order_relaxed))) {
    /* Cannot happen by construction; if it does, say so loudly (the seed
     * project's bug) rather than hand out memory that is still in use. */
    _hak_detect(HKT_DET_SS_INVARIANT, ss, ss, ss->live, "SuperSlab released with live blocks or a non-empty remote queue");
    return;  /* HAKMEM_ON_ERROR=continue: keep it registered and leaked, the safest thing left */
  }
  unsigned lg = ss->lg_size, cls = ss->cls;
  _hak_ss_unregister(h, ss);
  atomic_fetch_sub_explicit(&_hak_g.ss_live, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&_hak_g.ss_unreg, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&_hak_g.ss_unreg_cls[cls], 1, memory_order_relaxed);
  _hak_arena_ss_free(ss, lg);
}

/* Change a SuperSlab's owner (global lock held) and emit the event that
 * says so. While recording both happen under its remote lock as well:
 * remote pushes record the owner they saw, and that observation must fall
 * on one side of the change's sequence number. */
static void set_owner(hak_ss *ss, uint32_t owner, hkt_event *ev) {
  int rec = HAK_REC_ON();
  if (rec) hak_lock(&ss->remote_lock);
  HAK_WR(ss->owner, owner);
  if (rec) _hak_emit(ev);
  if (rec) hak_unlock(&ss->remote_lock);
}

/* A SuperSlab for h to carve class cls from: an abandoned one first (its
 * blocks are already paid for), then a parked empty one, then a new one. */
hak_ss *_hak_ss_acquire(hak_heap *h, unsigned cls) {
  _hak_rec_wait();
  hak_lock(&_hak_global);
  hak_ss *ss = _hak_shared[cls].head;
  int from_cache = 0;
  if (!ss && (ss = _hak_empty[cls].head)) from_cache = 1;
  if (ss) {
    _hak_sslist_remove(from_cache ? &_hak_empty[cls] : &_hak_shared[cls], ss);
    hkt_event ev = {.kind = HKT_EV_SS_ADOPT, .fn = (uint16_t)from_cache, .tid = h->idx, .cls = cls,
                    .ptr = (uint64_t)(uintptr_t)ss, .aux = h->idx, .aux2 = ss->id};
    set_owner(ss, h->idx, &ev);
    atomic_fetch_add_explicit(&_hak_g.ss_adopted, !from_cache, memory_order_relaxed);
  } else {
    ss = ss_create(h, cls);
  }
  hak_unlock(&_hak_global);
  return ss;
}

/* The owner found ss empty (live == 0): park it, or release it when the
 * cache for its class is full. */
void _hak_ss_retire(hak_heap *h, hak_ss *ss) {
  if (HAK_DBG_ON()) _hak_dbg_audit(h, ss, 0);
  _hak_rec_wait();
  hak_lock(&_hak_global);
  unsigned cls = ss->cls;
  if (_hak_empty[cls].n < _hak_cfg.ss_cache && ss->live == 0) {
    /* Reset the carve state so a reuse starts as a fresh SuperSlab: the
     * same addresses come back in the same order. */
    HAK_WR(ss->carved, 0);
    HAK_WR(ss->carve_len, 0);
    ss->nfree = 0;
    ss->freelist = NULL;
    _hak_sslist_push(&_hak_empty[cls], ss, HAK_SS_EMPTY);
    hkt_event ev = {.kind = HKT_EV_SS_EMPTY, .tid = h->idx, .cls = cls,
                    .ptr = (uint64_t)(uintptr_t)ss, .aux2 = ss->id};
    set_owner(ss, HAK_NO_OWNER, &ev);
  } else {
    ss_release(h, ss);
  }
  hak_unlock(&_hak_global);
}

/* The owner is exiting and ss still has live blocks: leave it for
 * another thread to adopt. */
void _hak_ss_abandon(hak_heap *h, hak_ss *ss) {
  if (HAK_DBG_ON()) _hak_dbg_audit(h, ss, 1);
  _hak_rec_wait();
  hak_lock(&_hak_global);
  _hak_sslist_push(&_hak_shared[ss->cls], ss, HAK_SS_SHARED);
  hkt_event ev = {.kind = HKT_EV_SS_ABANDON, .tid = h->idx, .cls = ss->cls,
                  .ptr = (uint64_t)(uintptr_t)ss, .aux = ss->live, .aux2 = ss->id};
  set_owner(ss, HAK_NO_OWNER, &ev);
  hak_unlock(&_hak_global);
}

/* Free by a thread that does not own ss: a lock-free push. While recording,
 * the SuperSlab's lock makes the push and its sequence number one step, so
 * that replay sees pushes and drains in the order they happened. */
int _hak_ss_push_remote(hak_heap *h, hak_ss *ss, void *p, uint32_t id) {
  int rec = HAK_REC_ON();
  if (rec) {
    _hak_rec_wait();
    hak_lock(&ss->remote_lock);
    /* The look-up that found ss had no lock: a stale pointer's SuperSlab
     * may have been unregistered since. Whether it still is ss is decided
     * here, ordered by this lock against (un)registration, so that replay
     * decides the same (hook.h). */
    if (!_hak_ss_is(ss, id)) { hak_unlock(&ss->remote_lock); return -1; }
    hkt_event ev = {.kind = HKT_EV_REMOTE_PUSH, .tid = _hak_tls_idx, .cls = ss->cls,
                    .ptr = (uint64_t)(uintptr_t)p, .aux = (uint64_t)(uintptr_t)ss, .aux2 = ss->owner};
    _hak_emit(&ev);
  }
  void *head = atomic_load_explicit(&ss->remote, memory_order_relaxed);
  do {
    *(void **)p = head;
  } while (!atomic_compare_exchange_weak_explicit(&ss->remote, &head, p, memory_order_release,
                                                  memory_order_relaxed));
  if (rec) hak_unlock(&ss->remote_lock);
  return 0;
}

/* Owner: move the remote queue onto the SuperSlab's freelist. The caller
 * holds ss->remote_lock while recording. Returns blocks drained. */
uint32_t _hak_ss_drain_remote(hak_heap *h, hak_ss *ss) {
  if (!atomic_load_explicit(&ss->remote, memory_order_relaxed)) return 0;
  void *p = atomic_exchange_explicit(&ss->remote, NULL, memory_order_acquire);
  uint32_t n = 0;
  while (p) {
    /* More blocks than the SuperSlab has: the queue loops (a block pushed
     * twice, or pushed while on a freelist). Relinking it would go on
     * forever; say so and keep what came before. */
    if (unlikely(n == ss->capacity)) {
      _hak_detect(HKT_DET_SS_INVARIANT, ss, ss, n,
                  "remote-free queue holds more blocks than its SuperSlab has (a cycle: a block pushed twice)");
      break;
    }
    void *next = *(void **)p;
    *(void **)p = ss->freelist;
    ss->freelist = p;
    p = next;
    n++;
  }
  ss->nfree += n;
  ss->live -= n;
  _hak_stat_out(ss->cls, -(int64_t)n);
  h->ctr[ss->cls].remote_drains += n;
  if (HAK_REC_ON()) {
    hkt_event ev = {.kind = HKT_EV_REMOTE_DRAIN, .tid = h->idx, .cls = ss->cls,
                    .aux = (uint64_t)(uintptr_t)ss, .size = n};
    _hak_emit(&ev);
  }
  return n;
}
