/* bypass.c — memory for the libraries the recorder loads itself.
 *
 * The recorder dlopens libzstd (and libgcc_s for --backtrace) from its
 * constructor, while the program is being recorded. The loader's
 * allocations for them are hakmem's business, not the program's: served
 * from the heap they would be events in every trace (leaks by callsite in
 * ld.so, SuperSlabs of classes the program never uses) and would move the
 * program's own blocks. So while a thread is between _hak_bypass_begin()
 * and _hak_bypass_end(), its allocations come from this bump arena,
 * unrecorded. A block of the arena freed later (the loader's, at dlclose)
 * is recognised by its address and dropped; one reallocated stays here.
 * Nothing is reused: the arena holds a few KiB per loaded library. */
#include <errno.h>
#include <string.h>
#include "entry.h"

#define BYPASS_BYTES ((size_t)4 << 20)   /* reserved, NORESERVE: pages cost when touched */
#define BYPASS_HDR   16u                 /* the block's size, in the 16 bytes before it */

__thread int _hak_bypass_depth HAK_TLS_IE;
char *_hak_bypass_lo, *_hak_bypass_hi;   /* the arena; both NULL until first used */
static size_t used;
static hak_lock_t bypass_lock;

void _hak_bypass_begin(void) { _hak_bypass_depth++; }
void _hak_bypass_end(void) { _hak_bypass_depth--; }

/* A block of `size` bytes aligned to `align` (a power of two), zeroed: the
 * arena's pages are fresh and nothing is given out twice. */
void *_hak_bypass_alloc(size_t size, size_t align) {
  if (align < BYPASS_HDR) align = BYPASS_HDR;
  void *p = NULL;
  hak_lock(&bypass_lock);
  if (!_hak_bypass_lo) {
    char *a = _hak_os_alloc_meta(BYPASS_BYTES);
    if (a) _hak_bypass_lo = a, _hak_bypass_hi = a + BYPASS_BYTES;
  }
  if (_hak_bypass_lo && size <= BYPASS_BYTES && align <= BYPASS_BYTES / 2) {
    size_t at = (used + BYPASS_HDR + align - 1) & ~(align - 1);
    if (at + size <= BYPASS_BYTES) {
      p = _hak_bypass_lo + at;
      ((size_t *)p)[-2] = size;
      used = at + size;
    }
  }
  hak_unlock(&bypass_lock);
  if (!p) errno = ENOMEM;
  return p;
}

size_t _hak_bypass_usable(const void *p) { return ((const size_t *)p)[-2]; }

/* realloc while bypassing, or of an arena block: the new block comes from
 * the arena. An old block of the heap is freed as the program's (it was
 * allocated as one, so its free is an event too). */
void *_hak_bypass_realloc(void *p, size_t size, void *caller) {
  void *r = _hak_bypass_alloc(size ? size : 1, BYPASS_HDR);
  if (!r || !p) return r;
  int ours = _hak_bypass_owns(p);
  size_t old = ours ? _hak_bypass_usable(p) : _hak_usable_size(p);
  memcpy(r, p, old < size ? old : size);
  if (!ours) _hak_e_free(p, caller);
  return r;
}
