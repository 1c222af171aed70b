/* api.c — the malloc family's slow paths and glibc semantics, and the
 * hak_* names. The fast paths are in entry.h. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "entry.h"

const uint32_t _hak_cls_size[HAK_CLASSES] = {
  8, 16, 32, 64, 128, 256, 512, 1024, 1280, 1536, 1792, 2048, 2560, 3072, 3584, 4096, 5120, 6144, 7168, 8192, 10240, 12288, 14336, 16384, 20480, 24576, 28672, 32768};
const uint8_t _hak_tiny_cls[HAK_TINY_MAX / 8 + 1] = {
  0, 0, 1, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4,
  4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
  5, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
  6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6,
  6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  7,
};

/* _hak_emit_packed off its hot path: the thread's first event (its
 * THREAD_START first), or a recorder without emit_call (replay, LTTng, the
 * early buffer), which gets an hkt_event. */
static __attribute__((noipa)) void emit_call_other(uint64_t meta, void *p, uint64_t size, uint64_t aux,
                                                   uint64_t aux2, void *caller) {
  if (_hak_tls->state == HAK_HEAP_EMPTY) _hak_heap_init();
  const hak_recorder *r = _hak_rec_get();
  if (!r) return;
  meta |= (uint64_t)_hak_tls_idx << 32;
  if (r->emit_call) {
    r->emit_call(meta, (uint64_t)(uintptr_t)p, size, aux, aux2, (uint64_t)(uintptr_t)caller);
    return;
  }
  hkt_event ev = {.kind = HAK_META_KIND(meta), .fn = HAK_META_FN(meta), .tid = HAK_META_TID(meta),
                  .cls = HAK_META_CLS(meta), .ptr = (uint64_t)(uintptr_t)p, .size = size, .aux = aux,
                  .aux2 = aux2, .caller = (uint64_t)(uintptr_t)caller};
  r->emit(r->ctx, &ev);
}

/* One test and a jump to the recorder's direct entry: written so that it
 * needs no frame (everything else is a jump too). */
void _hak_emit_packed(uint64_t meta, void *p, uint64_t size, uint64_t aux, uint64_t aux2, void *caller) {
  const hak_recorder *r = _hak_rec_get();
  if (likely(_hak_tls->state != HAK_HEAP_EMPTY && r != NULL && r->emit_call != NULL)) {
    r->emit_call(meta | (uint64_t)_hak_tls_idx << 32, (uint64_t)(uintptr_t)p, size, aux, aux2,
                 (uint64_t)(uintptr_t)caller);
    return;
  }
  emit_call_other(meta, p, size, aux, aux2, caller);
}

/* malloc when the fast path could not: cache empty, not set up, large,
 * recording or debugging. */
void *_hak_malloc_slow(size_t size, void *caller) {
  unsigned cls;
  void *p = _hak_alloc(size, &cls);
  if (HAK_REC_ON()) _hak_emit_call(HKT_EV_MALLOC, 0, p, size, 0, p ? 0 : ENOMEM, cls, caller);
  return p;
}

/* Cache empty, set-up not done, mid/large size, or an alignment. */
void *_hak_alloc_slow(size_t size, size_t align, unsigned *cls) {
  _hak_init();
  size_t req = size;
  if (HAK_DBG_ON()) size = _hak_dbg_pad(size);   /* room for a canary */
  size_t s = size < align ? align : size;
  if (s <= HAK_MID_MAX && align <= HAK_PAGE) {
    unsigned c = _hak_size_class(s);
    uint32_t bs = _hak_cls_size[c];
    /* A block is aligned to the largest power of two dividing its size
     * (blocks start one page into a SuperSlab). If that is not enough,
     * the power-of-two class above s is. */
    if ((bs & -bs) < align) {
      size_t p2 = (size_t)1 << (64 - __builtin_clzl(s - 1));
      c = _hak_size_class(p2);
    }
    if (c < HAK_CLASSES) {
      hak_heap *h = _hak_tls;
      void *p;
      if (h->state == HAK_HEAP_LIVE && h->cache[c].count) p = h->cache[c].slot[--h->cache[c].count];
      else p = _hak_refill_alloc(h, c);
      if (!p) { errno = ENOMEM; *cls = c; return NULL; }
      _hak_tls->cache[c].allocs++;
      *cls = c;
      if (HAK_DBG_ON()) _hak_dbg_track(p, req, c);
      return p;
    }
  }
  *cls = HKT_NO_CLASS;
  void *p = _hak_large_alloc(size, align < HAK_PAGE ? HAK_PAGE : align);
  if (!p) errno = ENOMEM;
  return p;
}

/* 0 pushed; -1 (recording only) ss is no longer SuperSlab `id`. */
int _hak_free_remote(hak_heap *h, hak_ss *ss, void *p, uint32_t id) {
  if (h->state == HAK_HEAP_EMPTY && (h = _hak_heap_init()) == NULL) h = &_hak_heap_dead;
  unsigned cls = ss->cls;
  if (_hak_ss_push_remote(h, ss, p, id)) return -1;
  if (h->state != HAK_HEAP_LIVE) {
    atomic_fetch_add_explicit(&_hak_g.late_frees[cls], 1, memory_order_relaxed);
  } else {
    h->cache[cls].frees++;
    h->ctr[cls].remote_frees++;
  }
  return 0;
}

/* Say what is wrong with the pointer given to free(), in one line, then
 * abort as glibc does (or go on with HAKMEM_ON_ERROR=continue). */
static const char *invalid_free_why(unsigned det) {
  return det == HKT_DET_STALE_FREE ? "free(): invalid pointer (stale: its SuperSlab is no longer registered)"
                                   : "free(): invalid pointer";
}

void _hak_invalid_free(const void *p, unsigned det, const hak_ss *ss) {
  atomic_fetch_add_explicit(&_hak_g.invalid_frees, 1, memory_order_relaxed);
  _hak_detect(det, p, ss, 0, invalid_free_why(det));   /* event, one line, abort unless HAKMEM_ON_ERROR=continue */
}

/* Into this thread's cache (it owns ss). */
static inline void free_local(hak_heap *h, hak_ss *ss, void *p) {
  hak_tcache *tc = &h->cache[ss->cls];
  if (tc->count == tc->cap) _hak_flush(h, ss->cls, tc->cap / 2);
  tc->slot[tc->count++] = p;
  tc->frees++;
}

/* free() while recording (or replaying). The registry look-up has no lock,
 * and a stale pointer's SuperSlab can be unregistered (or a new one made at
 * its base) by its owner at any moment. So every decision such a change
 * could turn is made again under the lock that orders it, together with
 * the event that says what was decided: a remote push under the
 * SuperSlab's remote lock (_hak_ss_push_remote), a stale or invalid free
 * under the global lock. Its place in seq order is that event's, and a
 * replay, which releases that event in the same place, decides the same.
 * A block of a SuperSlab this thread owns needs no lock: only the owner
 * unregisters a SuperSlab. */
static void free_recorded(void *p, hak_ss *ss, void *caller) {
  unsigned cls = ss && HAK_RD(ss->magic) == HAK_SS_MAGIC ? ss->cls : HKT_NO_CLASS;
  _hak_emit_call(HKT_EV_FREE, 0, p, 0, 0, 0, cls, caller);
  for (;;) {
    if (ss && HAK_RD(ss->magic) == HAK_SS_MAGIC) {
      uint32_t id = HAK_RD(ss->id);
      if (HAK_DBG_ON() && _hak_dbg_free(p, ss)) return;
      if (_hak_block_index(ss, p) < 0) { _hak_invalid_free(p, HKT_DET_INTERIOR_FREE, ss); return; }
      hak_heap *h = _hak_tls;
      if (HAK_RD(ss->owner) == h->idx) { free_local(h, ss, p); return; }
      if (_hak_free_remote(h, ss, p, id) == 0) return;
      /* ss was unregistered before the push could happen: a stale free */
    } else if (!ss && _hak_in_large(p)) {
      if (_hak_large_free(p) != 0) _hak_invalid_free(p, HKT_DET_INTERIOR_FREE, NULL);
      return;
    }
    _hak_rec_wait();
    hak_lock(&_hak_global);
    ss = _hak_ss_of(p);            /* under the global lock: registered means whole */
    if (ss) { hak_unlock(&_hak_global); continue; }   /* a SuperSlab is there (again): decide as for it */
    uint64_t off = (uint64_t)((char *)p - _hak_arena.ss_base);
    unsigned det = off < HAK_RD(_hak_arena.ss_top) ? HKT_DET_STALE_FREE : HKT_DET_INVALID_FREE;
    uint64_t seq = _hak_detect_emit(det, p, NULL, 0);
    char where[256];
    _hak_detect_where(where, sizeof where, p, NULL);
    hak_unlock(&_hak_global);
    atomic_fetch_add_explicit(&_hak_g.invalid_frees, 1, memory_order_relaxed);
    _hak_detect_report(det, p, NULL, invalid_free_why(det), seq, where);
    return;
  }
}

/* free() for everything the fast path did not take: recording on, large
 * blocks, and pointers that are not ours. */
void _hak_free_slow(void *p, void *caller) {
  if (!p) return;
  _hak_init();
  hak_ss *ss = _hak_ss_of(p);
  if (!ss && _hak_bypass_owns(p)) return;   /* the loader's, from the recorder's own dlopen */
  if (HAK_REC_ON()) { free_recorded(p, ss, caller); return; }
  if (ss) {
    if (HAK_DBG_ON() && ss->magic == HAK_SS_MAGIC && _hak_dbg_free(p, ss)) return;
    if (ss->magic != HAK_SS_MAGIC || _hak_block_index(ss, p) < 0) {
      _hak_invalid_free(p, HKT_DET_INTERIOR_FREE, ss);
      return;
    }
    hak_heap *h = _hak_tls;
    if (HAK_RD(ss->owner) == h->idx) free_local(h, ss, p);
    else _hak_free_remote(h, ss, p, ss->id);
    return;
  }
  if (_hak_in_large(p)) {
    if (_hak_large_free(p) == 0) return;
    _hak_invalid_free(p, HKT_DET_INTERIOR_FREE, NULL);
    return;
  }
  uint64_t off = (uint64_t)((char *)p - _hak_arena.ss_base);
  _hak_invalid_free(p, off < HAK_RD(_hak_arena.ss_top) ? HKT_DET_STALE_FREE : HKT_DET_INVALID_FREE, NULL);
}

static size_t block_usable(const void *p) {
  if (!p) return 0;
  hak_ss *ss = _hak_ss_of(p);
  if (ss) return ss->magic == HAK_SS_MAGIC && _hak_block_index(ss, p) >= 0 ? ss->block_size : 0;
  if (_hak_in_large(p)) return _hak_large_usable(p);
  return _hak_bypass_owns(p) ? _hak_bypass_usable(p) : 0;
}

/* malloc_usable_size: the program may use all of it from now on, so a
 * debug canary past the requested size goes. */
size_t _hak_usable_size(const void *p) {
  size_t n = block_usable(p);
  if (HAK_DBG_ON() && n) _hak_dbg_resize((void *)p, n);
  return n;
}

/* Free without an event and without checks (realloc's move, quarantine). */
void _hak_free_raw(void *p) {
  hak_ss *ss = _hak_ss_of(p);
  if (ss) {
    hak_heap *h = _hak_tls;
    /* realloc's old block, a quarantined one: ours; a SuperSlab gone under
     * it (recording, an injected release) is not written to */
    if (HAK_RD(ss->owner) == h->idx) free_local(h, ss, p);
    else _hak_free_remote(h, ss, p, ss->id);
  } else {
    _hak_large_free(p);
  }
}

/* realloc and reallocarray (count != 0 for the latter). glibc semantics:
 * NULL -> malloc; size 0 with a pointer -> free, NULL; failure leaves the
 * block as it was. Grows and shrinks in place when the block allows. */
void *_hak_realloc_impl(void *p, size_t size, size_t count, uint16_t fn, void *caller) {
  void *r = NULL;
  unsigned cls = HKT_NO_CLASS;
  int err = 0;
  if (fn == HKT_FN_REALLOCARRAY && __builtin_mul_overflow(count, size, &size)) {
    err = ENOMEM;
  } else if (_hak_bypassing() || _hak_bypass_owns(p)) {
    return _hak_bypass_realloc(p, size, caller);
  } else if (!p) {
    r = _hak_alloc(size, &cls);
    if (!r) err = ENOMEM;
  } else if (size == 0) {
    if (HAK_REC_ON()) _hak_emit_call(HKT_EV_REALLOC, fn, NULL, 0, (uint64_t)(uintptr_t)p, 0, cls, caller);
    _hak_e_free(p, caller);
    return NULL;
  } else {
    _hak_init();
    const char *why = NULL;
    unsigned det = HAK_DBG_ON() ? _hak_dbg_realloc_check(p, &why) : 0;
    size_t old = det ? 0 : block_usable(p);
    if (old == 0) {
      /* The call first, then what is wrong with it: replay drives the call. */
      if (HAK_REC_ON())
        _hak_emit_call(HKT_EV_REALLOC, fn, NULL, size, (uint64_t)(uintptr_t)p, EINVAL, cls, caller);
      hak_ss *ss = _hak_ss_of(p);
      if (det) _hak_detect(det, p, det == HKT_DET_STALE_FREE ? NULL : ss, 0, why);
      else _hak_invalid_free(p, ss ? HKT_DET_INTERIOR_FREE : HKT_DET_INVALID_FREE, ss);
      errno = EINVAL;
      return NULL;
    }
    hak_ss *ss = _hak_ss_of(p);
    if (ss && size <= old && (size > old / 4 || old <= 64)) {
      r = p;                                   /* shrink in place, or no change */
      cls = ss->cls;
      if (HAK_DBG_ON()) _hak_dbg_resize(p, size);
    } else if (!ss && size > HAK_MID_MAX && _hak_large_resize(p, size) == 0) {
      r = p;                                   /* large: in place */
    } else if ((r = _hak_alloc(size, &cls)) != NULL) {
      memcpy(r, p, size < old ? size : old);
      /* The call's event before the old block goes: freed into another
       * thread's SuperSlab it can be reused there at once, and the trace
       * must not show this realloc after that reuse. */
      if (HAK_REC_ON())
        _hak_emit_call(HKT_EV_REALLOC, fn, r, size, (uint64_t)(uintptr_t)p, 0, cls, caller);
      if (!HAK_DBG_ON() || !_hak_dbg_free(p, _hak_ss_of(p))) _hak_free_raw(p);
      return r;
    } else {
      err = ENOMEM;
    }
  }
  if (err) errno = err;
  if (HAK_REC_ON())
    _hak_emit_call(HKT_EV_REALLOC, fn, r, size, (uint64_t)(uintptr_t)p, err, cls, caller);
  return r;
}

void *_hak_aligned_impl(size_t align, size_t size, uint16_t fn, void *caller) {
  void *p = NULL;
  unsigned cls = HKT_NO_CLASS;
  int err = 0;
  if (fn == HKT_FN_VALLOC || fn == HKT_FN_PVALLOC) align = HAK_PAGE;
  if (fn == HKT_FN_PVALLOC) {
    if (size > SIZE_MAX - HAK_PAGE) { err = ENOMEM; goto out; }
    size = size ? (size + HAK_PAGE - 1) & ~(size_t)(HAK_PAGE - 1) : HAK_PAGE;
  }
  if (align == 0 || (align & (align - 1))) {
    if (fn == HKT_FN_MEMALIGN && align) {      /* glibc rounds up */
      align = (size_t)1 << (64 - __builtin_clzl(align));
    } else if (fn == HKT_FN_MEMALIGN) {
      align = 1;
    } else {
      err = EINVAL;
      goto out;
    }
  }
  if (align > ((size_t)1 << 40)) { err = align > SIZE_MAX / 2 ? EINVAL : ENOMEM; goto out; }
  if (_hak_bypassing()) return _hak_bypass_alloc(size, align);
  p = _hak_alloc_slow(size, align, &cls);
  if (!p) err = ENOMEM;
out:
  if (err) errno = err;
  if (HAK_REC_ON()) _hak_emit_call(HKT_EV_ALIGNED, fn, p, size, align, err, cls, caller);
  return p;
}

int _hak_posix_memalign_impl(void **out, size_t align, size_t size, void *caller) {
  if (align < sizeof(void *) || (align & (align - 1))) {
    if (HAK_REC_ON()) _hak_emit_call(HKT_EV_ALIGNED, HKT_FN_POSIX_MEMALIGN, NULL, size, align, EINVAL, HKT_NO_CLASS, caller);
    return EINVAL;
  }
  int saved = errno;
  void *p = _hak_aligned_impl(align, size, HKT_FN_POSIX_MEMALIGN, caller);
  if (!p) { errno = saved; return ENOMEM; }
  *out = p;
  return 0;
}

#define RA __builtin_return_address(0)
HAK_API void *hak_malloc(size_t n) {
  void *p;
  if (likely(_hak_fast_malloc(n, &p))) return p;
  return _hak_malloc_miss(n, RA);
}
HAK_API void hak_free(void *p) {
  if (likely(_hak_fast_free(p))) return;
  _hak_free_miss(p, RA);
}
HAK_API void  *hak_calloc(size_t n, size_t s) { return _hak_e_calloc(n, s, RA); }
HAK_API void  *hak_realloc(void *p, size_t n) { return _hak_realloc_impl(p, n, 0, HKT_FN_REALLOC, RA); }
HAK_API void  *hak_reallocarray(void *p, size_t n, size_t s) { return _hak_realloc_impl(p, s, n, HKT_FN_REALLOCARRAY, RA); }
HAK_API int    hak_posix_memalign(void **o, size_t a, size_t n) { return _hak_posix_memalign_impl(o, a, n, RA); }
HAK_API void  *hak_aligned_alloc(size_t a, size_t n) { return _hak_aligned_impl(a, n, HKT_FN_ALIGNED_ALLOC, RA); }
HAK_API void  *hak_memalign(size_t a, size_t n) { return _hak_aligned_impl(a, n, HKT_FN_MEMALIGN, RA); }
HAK_API void  *hak_valloc(size_t n) { return _hak_aligned_impl(HAK_PAGE, n, HKT_FN_VALLOC, RA); }
HAK_API void  *hak_pvalloc(size_t n) { return _hak_aligned_impl(HAK_PAGE, n, HKT_FN_PVALLOC, RA); }
HAK_API size_t hak_malloc_usable_size(const void *p) { _hak_init(); return _hak_usable_size(p); }
