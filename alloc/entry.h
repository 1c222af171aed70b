/* entry.h — the malloc family, as inline bodies shared by api.c (hak_*
 * names) and shim.c (malloc, free, ...). Each exported function is a
 * one-line wrapper that adds its caller's address.
 *
 * Why the fast paths look the way they do:
 *  - malloc: size -> class by table (tiny) or two shifts (mid), then a pop
 *    from the thread's cache. The heap before first use is a sentinel with
 *    empty caches, so set-up costs no test on the fast path.
 *  - free: the registry gives the SuperSlab in one load; if this thread owns
 *    it the block is pushed on the cache, otherwise it goes to the
 *    SuperSlab's remote queue. No header per block.
 *  - recording costs one predictable branch per call (HAK_REC_ON); the
 *    recorded variants are the same code instantiated with rec = 1. */
#ifndef HAK_ENTRY_H
#define HAK_ENTRY_H

#include <errno.h>
#include <string.h>
#include "internal.h"

void *_hak_alloc_slow(size_t size, size_t align, unsigned *cls);
void  _hak_free_slow(void *p, void *caller);
int   _hak_free_remote(hak_heap *h, hak_ss *ss, void *p, uint32_t id);   /* -1: ss gone (recording) */
/* A malloc-family call's event (api.c). Its arguments fit in registers
 * (kind, fn and cls packed by HAK_CALL_META, the thread index added), so
 * that it needs no frame and ends in a jump to the recorder. */
void  _hak_emit_packed(uint64_t meta, void *p, uint64_t size, uint64_t aux, uint64_t aux2, void *caller);
static inline void _hak_emit_call(uint16_t kind, uint16_t fn, void *p, uint64_t size, uint64_t aux,
                                  uint64_t aux2, unsigned cls, void *caller) {
  _hak_emit_packed(HAK_CALL_META(kind, fn, cls, 0), p, size, aux, aux2, caller);
}
void *_hak_realloc_impl(void *p, size_t size, size_t count, uint16_t fn, void *caller);
void *_hak_aligned_impl(size_t align, size_t size, uint16_t fn, void *caller);
int   _hak_posix_memalign_impl(void **out, size_t align, size_t size, void *caller);
size_t _hak_usable_size(const void *p);

/* Allocate without an event; *cls is the class or HKT_NO_CLASS (large). */
static inline void *_hak_alloc(size_t size, unsigned *cls) {
  if (likely(size <= HAK_MID_MAX) && !HAK_DBG_ON()) {   /* debug: every block through the slow path */
    hak_heap *h = _hak_tls;
    unsigned c = _hak_size_class(size);
    hak_tcache *tc = &h->cache[c];
    *cls = c;
    if (likely(tc->count)) {
      tc->allocs++;
      return tc->slot[--tc->count];
    }
  }
  return _hak_alloc_slow(size, 0, cls);
}

void *_hak_malloc_slow(size_t size, void *caller);

/* The exported functions are `fast path, else tail call`: the fast path
 * is a cache pop that needs no frame, and the caller's address is only
 * read on the way to the slow path. */
static inline __attribute__((always_inline)) int _hak_fast_malloc(size_t size, void **out) {
  if (likely(size <= HAK_MID_MAX) && !HAK_INSTR_SLOW()) {
    hak_heap *h = _hak_tls;
    unsigned cls = _hak_size_class(size);
    hak_tcache *tc = &h->cache[cls];
    if (likely(tc->count)) {
      tc->allocs++;
      void *p = *out = tc->slot[--tc->count];
      if (HAK_INSTR_DBG1()) _hak_dbg_track(p, size, cls);
      return 1;
    }
  }
  return 0;
}

static inline void *_hak_e_malloc(size_t size, void *caller) {
  void *p;
  return _hak_fast_malloc(size, &p) ? p : _hak_malloc_slow(size, caller);
}

/* Everything but "this thread owns the block and its cache has room" goes
 * to _hak_free_slow as a tail call: NULL, recording, a full cache, remote,
 * large, invalid. Keeping the fast path a leaf saves its register spills. */
static inline __attribute__((always_inline)) int _hak_fast_free(void *p) {
  hak_ss *ss = _hak_ss_of(p);
  /* The registry only maps live SuperSlabs, so ss is one. Power-of-two
   * classes check the block boundary with a mask; the mid classes' division
   * is left to the slow path. */
  uintptr_t off;
  if (likely(ss != NULL) && !HAK_INSTR_SLOW() && likely(ss->shift) &&
      likely(((off = (uintptr_t)p - (uintptr_t)ss->blocks) & ss->block_mask) == 0) &&
      likely(off < (uintptr_t)(HAK_RD(ss->carve_end) - ss->blocks))) {   /* unsigned: below blocks fails too */
    hak_heap *h = _hak_tls;
    hak_tcache *tc = &h->cache[ss->cls];
    if (likely(HAK_RD(ss->owner) == h->idx && tc->count < tc->cap)) {
      if (HAK_INSTR_DBG1() && _hak_dbg_free(p, ss)) return 1;   /* reported, not freed */
      tc->slot[tc->count++] = p;
      tc->frees++;
      return 1;
    }
  }
  return 0;
}

static inline void _hak_e_free(void *p, void *caller) {
  if (!_hak_fast_free(p)) _hak_free_slow(p, caller);
}

static inline void *_hak_e_calloc(size_t n, size_t size, void *caller) {
  size_t total;
  void *p;
  unsigned cls = HKT_NO_CLASS;
  if (unlikely(__builtin_mul_overflow(n, size, &total))) {
    errno = ENOMEM;
    p = NULL;
  } else if ((p = _hak_alloc(total, &cls)) != NULL) {
    memset(p, 0, total);
  }
  if (HAK_REC_ON()) _hak_emit_call(HKT_EV_CALLOC, 0, p, size, n, p ? 0 : ENOMEM, cls, caller);
  return p;
}

#endif /* HAK_ENTRY_H */
