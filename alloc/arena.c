/* arena.c — the address range every byte comes from, and the registry.
 *
 * One reservation at a base that HAKMEM_ARENA_BASE (or recording) fixes,
 * randomized otherwise: [base, base+R) holds SuperSlabs in 1 MiB chunks,
 * [base+R, base+2R) holds page-granular large blocks. Reserved PROT_NONE,
 * committed (made RW) in steps as the bump tops grow, so what a process uses
 * is what it touches. Freed chunks are decommitted and reused LIFO: the
 * same calls in the same order give the same addresses.
 *
 * The registry is `ssmap`: chunk index -> live SuperSlab. Registering and
 * unregistering a SuperSlab is writing and clearing its entries, under the
 * global lock; lookups read it without a lock (an entry is only cleared
 * when no block of that SuperSlab is live anywhere). */
#include <string.h>
#include "internal.h"

#define COMMIT_STEP (64ull << 20)

hak_arena _hak_arena;
hak_lock_t _hak_global;

/* Stacks of free chunk indices, per SuperSlab size. */
static uint32_t *free_chunks[2];
static uint32_t nfree_chunks[2];

int _hak_arena_init(void) {
  hak_arena *a = &_hak_arena;
  uint64_t R = _hak_cfg.arena_reserve, total = 2 * R;
  char *base = NULL;

  if (_hak_cfg.arena_base) {
    base = _hak_os_reserve(_hak_cfg.arena_base, total, 1);
    if (!base)
      _hak_msg("HAKMEM_ARENA_BASE=0x%llx: range taken in this process; using a random base",
               (unsigned long long)_hak_cfg.arena_base);
  }
  if (!base) {
    /* Over-reserve by 2 MiB and trim so the base is 2 MiB aligned; the
     * kernel's placement is randomized (ASLR). Where address space is
     * limited (ulimit -v, valgrind) settle for less. */
    uint64_t align = 1ull << HAK_SS_LG_MID;
    char *raw;
    while (!(raw = _hak_os_reserve(0, total + align, 0))) {
      if (R <= (1ull << 30)) return -1;
      R /= 2;
      total = 2 * R;
    }
    base = (char *)(((uint64_t)raw + align - 1) & ~(align - 1));
    if (base > raw) _hak_os_release(raw, (size_t)(base - raw));
    _hak_os_release(base + total, (size_t)(raw + total + align - base - total));
  }
  a->ss_base = base;
  a->ss_size = R;
  a->lg_base = base + R;
  a->lg_size = R;
  uint64_t nchunks = R >> HAK_CHUNK_LG;
  a->ssmap = _hak_os_alloc_meta(nchunks * sizeof(hak_ss *));
  a->pgmap = _hak_os_alloc_meta((R / HAK_PAGE) * sizeof(uint32_t));
  free_chunks[0] = _hak_os_alloc_meta(nchunks * sizeof(uint32_t));
  free_chunks[1] = _hak_os_alloc_meta(nchunks * sizeof(uint32_t));
  if (!a->ssmap || !a->pgmap || !free_chunks[0] || !free_chunks[1]) return -1;
  return 0;
}

static int commit_to(char *base, uint64_t *committed, uint64_t top, uint64_t limit) {
  if (top <= *committed) return 0;
  uint64_t to = (top + COMMIT_STEP - 1) & ~(COMMIT_STEP - 1);
  if (to > limit) to = limit;
  if (_hak_os_commit(base + *committed, to - *committed) != 0) return -1;
  *committed = to;
  return 0;
}

/* A naturally aligned chunk of 2^lg bytes (lg 20 or 21). Global lock held. */
void *_hak_arena_ss_alloc(unsigned lg) {
  hak_arena *a = &_hak_arena;
  unsigned k = lg - HAK_CHUNK_LG;
  if (nfree_chunks[k]) {
    uint32_t idx = free_chunks[k][--nfree_chunks[k]];
    atomic_fetch_add_explicit(&_hak_g.os_committed, 1ull << lg, memory_order_relaxed);
    return a->ss_base + ((uint64_t)idx << HAK_CHUNK_LG);
  }
  uint64_t size = 1ull << lg;
  uint64_t off = (a->ss_top + size - 1) & ~(size - 1);
  if (off + size > a->ss_size) return NULL;
  if (commit_to(a->ss_base, &a->ss_committed, off + size, a->ss_size) != 0) return NULL;
  if (off > a->ss_top)   /* the 1 MiB hole left by aligning a 2 MiB chunk */
    free_chunks[0][nfree_chunks[0]++] = (uint32_t)(a->ss_top >> HAK_CHUNK_LG);
  HAK_WR(a->ss_top, off + size);
  atomic_fetch_add_explicit(&_hak_g.os_committed, size, memory_order_relaxed);
  return a->ss_base + off;
}

/* Back to the arena: decommitted, kept mapped, reused LIFO. */
void _hak_arena_ss_free(void *p, unsigned lg) {
  hak_arena *a = &_hak_arena;
  _hak_os_decommit(p, 1ull << lg);
  uint32_t idx = (uint32_t)(((char *)p - a->ss_base) >> HAK_CHUNK_LG);
  free_chunks[lg - HAK_CHUNK_LG][nfree_chunks[lg - HAK_CHUNK_LG]++] = idx;
  atomic_fetch_sub_explicit(&_hak_g.os_committed, 1ull << lg, memory_order_relaxed);
}

int _hak_arena_lg_grow(uint64_t need_top) {
  hak_arena *a = &_hak_arena;
  if (need_top > a->lg_size) return -1;
  return commit_to(a->lg_base, &a->lg_committed, need_top, a->lg_size);
}
