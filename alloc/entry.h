/* entry.h — the malloc family, as inline bodies shared by api.c (hak_*
 * names) and shim.c (malloc, free, ...). Each exported function is a
 * one-line wrapper that adds its caller's address.
 *
 * Why the fast paths look the way they do:
 *  - malloc: size -> its cache's offset in the heap by one table load,
 *    then a pop from the thread's cache. The heap before first use is a
 *    sentinel with empty caches, so set-up costs no test on the fast path.
 *  - free: the registry gives the SuperSlab in one load; if this thread owns
 *    it the block is pushed on the cache (the SuperSlab header has the
 *    cache's offset), otherwise it goes to the SuperSlab's remote queue.
 *    No header per block.
 *  - both are leaves that call nothing, so they need no frame: anything
 *    else, recording and debugging included, is one tested word
 *    (_hak_instr) and a tail call to a _miss function. */
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

/* The fast paths test one word for everything else (hook.h): any
 * instrumentation, even debug level 1, goes to the _miss functions. */
#ifdef HAK_NO_HOOKS
#define HAK_INSTR_ANY() 0
#else
#define HAK_INSTR_ANY() __builtin_expect(_hak_instr != 0, 0)
#endif

/* Size -> the byte offset of its class's cache in hak_heap, in one load:
 * tiny sizes by 8-byte steps, mid sizes by 256-byte steps (every mid class
 * boundary is a multiple of 256). heap.c. */
extern const uint16_t _hak_tc_tiny[HAK_TINY_MAX / 8 + 1] HAK_INTERNAL;
extern const uint16_t _hak_tc_mid[HAK_MID_MAX / 256 + 1] HAK_INTERNAL;
#define HAK_TC_OFF(cls) (offsetof(hak_heap, cache) + (cls) * sizeof(hak_tcache))
static inline hak_tcache *_hak_tc_at(hak_heap *h, size_t off) { return (hak_tcache *)((char *)h + off); }

/* Whatever the inline fast paths did not do (heap.c): debug level 1's own
 * fast paths, then the slow paths. Tail-called with the caller's address. */
void *_hak_malloc_miss(size_t size, void *caller);
void  _hak_free_miss(void *p, void *caller);

/* The exported functions are `fast path, else tail call`: the fast path
 * is a cache pop that needs no frame and calls nothing, and the caller's
 * address is only read on the way out. */
static inline __attribute__((always_inline)) int _hak_fast_malloc(size_t size, void **out) {
  size_t off;
  if (likely(size <= HAK_TINY_MAX)) off = _hak_tc_tiny[(size + 7) >> 3];
  else if (likely(size <= HAK_MID_MAX)) off = _hak_tc_mid[(size + 255) >> 8];
  else return 0;
  if (HAK_INSTR_ANY()) return 0;
  hak_tcache *tc = _hak_tc_at(_hak_tls, off);
  uint32_t n = tc->count;
  if (unlikely(n == 0)) return 0;   /* also the sentinel heaps before set-up and after exit */
  tc->count = --n;
  tc->allocs++;
  *out = tc->slot[n];
  return 1;
}

static inline void *_hak_e_malloc(size_t size, void *caller) {
  void *p;
  return _hak_fast_malloc(size, &p) ? p : _hak_malloc_miss(size, caller);
}

/* The free fast path's reads of words other threads may write (the arena
 * top, a carve bound): plain, so that they fold into the compares, except
 * under the sanitizers, which must see them as the atomics they are. A
 * stale value only sends a free to the slow path: ss_top only grows, and
 * carve_len is written by the owner, which the fast free must be. */
#ifdef HAK_SANITIZER
#define HAK_FAST_RD(x) HAK_RD(x)
#else
#define HAK_FAST_RD(x) (x)
#endif

/* The cache p goes to when the fast free can take it: a block of a
 * SuperSlab this thread owns, at a carved block boundary, and the cache has
 * room; else NULL (NULL, a full cache, remote, large, invalid: the slow
 * path's). The registry maps only live SuperSlabs, so ss is one; its
 * block_mask is ~0 for the classes that are not powers of two (their block
 * 0 only: the division is the slow path's). */
static inline __attribute__((always_inline)) hak_tcache *_hak_free_cache(void *p, hak_ss **ssp) {
  uint64_t off = (uint64_t)((char *)p - _hak_arena.ss_base);
  if (unlikely(off >= HAK_FAST_RD(_hak_arena.ss_top))) return NULL;
  hak_ss *ss = *ssp = HAK_RD(_hak_arena.ssmap[off >> HAK_CHUNK_LG]);
  if (unlikely(ss == NULL)) return NULL;
  uint64_t boff = (uint64_t)((char *)p - ss->blocks);   /* unsigned: the header page fails the bound */
  if (unlikely(boff & ss->block_mask) || unlikely(boff >= HAK_FAST_RD(ss->carve_len))) return NULL;
  hak_heap *h = _hak_tls;
  if (unlikely(HAK_RD(ss->owner) != h->idx)) return NULL;
  hak_tcache *tc = _hak_tc_at(h, ss->tc_off);
  return likely(tc->count < tc->cap) ? tc : NULL;
}

static inline __attribute__((always_inline)) int _hak_fast_free(void *p) {
  hak_ss *ss;
  hak_tcache *tc;
  if (HAK_INSTR_ANY() || !(tc = _hak_free_cache(p, &ss))) return 0;
  tc->slot[tc->count++] = p;
  tc->frees++;
  return 1;
}

static inline void _hak_e_free(void *p, void *caller) {
  if (!_hak_fast_free(p)) _hak_free_miss(p, caller);
}

static inline void *_hak_e_calloc(size_t n, size_t size, void *caller) {
  size_t total;
  void *p;
  unsigned cls = HKT_NO_CLASS;
  if (unlikely(__builtin_mul_overflow(n, size, &total))) {
    errno = ENOMEM;
    p = NULL;
  } else if (HAK_REC_ON() && _hak_bypassing()) {
    return _hak_bypass_alloc(total, 16);   /* zeroed: the arena's pages are fresh */
  } else if ((p = _hak_alloc(total, &cls)) != NULL) {
    memset(p, 0, total);
  }
  if (HAK_REC_ON()) _hak_emit_call(HKT_EV_CALLOC, 0, p, size, n, p ? 0 : ENOMEM, cls, caller);
  return p;
}

#endif /* HAK_ENTRY_H */
