/* large.c — page-granular blocks above the mid classes.
 *
 * They live in the arena's large region. The page map (_hak_arena.pgmap)
 * has one word per page; only span boundaries are written:
 *   allocated span at page i:  pgmap[i] = npages | SPAN_ALLOC
 *   free span [i, i+n):        pgmap[i] = pgmap[i+n-1] = n | SPAN_FREE
 * so free() finds a block's size in one load, and a freed span merges with
 * its free neighbours by looking one word left and right. Free spans sit in
 * lists binned by log2(npages), first fit within a bin: deterministic, and
 * good enough for blocks that are rare next to tiny ones. All under the
 * global lock; every change is an event (LARGE_MAP / LARGE_UNMAP). */
#include <string.h>
#include "internal.h"

#define SPAN_ALLOC   0x80000000u
#define SPAN_FREE    0x40000000u
#define SPAN_PAGES   0x3fffffffu
#define NBINS        31
#define DECOMMIT_MIN (128u * 1024)   /* spans this big go back to the OS on free */

typedef struct { uint32_t next, prev; } span_link;   /* page index + 1; 0 = none */
static span_link *links;
static uint32_t bins[NBINS];

static inline uint32_t *pm(uint64_t i) { return &_hak_arena.pgmap[i]; }
static inline char *page_addr(uint64_t i) { return _hak_arena.lg_base + i * HAK_PAGE; }
static inline unsigned bin_of(uint64_t n) { unsigned b = 63 - __builtin_clzl(n); return b < NBINS ? b : NBINS - 1; }

static void bin_insert(uint64_t i, uint64_t n) {
  unsigned b = bin_of(n);
  links[i].prev = 0;
  links[i].next = bins[b];
  if (bins[b]) links[bins[b] - 1].prev = (uint32_t)(i + 1);
  bins[b] = (uint32_t)(i + 1);
}

static void bin_remove(uint64_t i, uint64_t n) {
  span_link *l = &links[i];
  if (l->prev) links[l->prev - 1].next = l->next; else bins[bin_of(n)] = l->next;
  if (l->next) links[l->next - 1].prev = l->prev;
}

/* Make [i, i+n) a free span, merged with free neighbours; a span that ends
 * at the bump top lowers the top instead. */
static void span_free(uint64_t i, uint64_t n) {
  hak_arena *a = &_hak_arena;
  *pm(i) = 0;
  if (i > 0 && (*pm(i - 1) & SPAN_FREE)) {
    uint64_t ln = *pm(i - 1) & SPAN_PAGES, li = i - ln;
    bin_remove(li, ln);
    *pm(i - 1) = 0; *pm(li) = 0;
    i = li; n += ln;
  }
  uint64_t r = i + n;
  if (r * HAK_PAGE < a->lg_top && (*pm(r) & SPAN_FREE)) {
    uint64_t rn = *pm(r) & SPAN_PAGES;
    bin_remove(r, rn);
    *pm(r) = 0; *pm(r + rn - 1) = 0;
    n += rn;
  }
  if ((i + n) * HAK_PAGE == a->lg_top) { HAK_WR(a->lg_top, i * HAK_PAGE); return; }
  *pm(i) = (uint32_t)n | SPAN_FREE;
  *pm(i + n - 1) = (uint32_t)n | SPAN_FREE;
  bin_insert(i, n);
}

/* Take n pages: first fit from the bins, else from the bump top. */
static int64_t span_take(uint64_t n) {
  for (unsigned b = bin_of(n); b < NBINS; b++) {
    for (uint32_t s = bins[b]; s; s = links[s - 1].next) {
      uint64_t i = s - 1, have = *pm(i) & SPAN_PAGES;
      if (have < n) continue;
      bin_remove(i, have);
      *pm(i) = 0; *pm(i + have - 1) = 0;
      if (have > n) span_free(i + n, have - n);
      return (int64_t)i;
    }
  }
  hak_arena *a = &_hak_arena;
  uint64_t i = a->lg_top / HAK_PAGE;
  if (n > SPAN_PAGES || _hak_arena_lg_grow(a->lg_top + n * HAK_PAGE) != 0) return -1;
  HAK_WR(a->lg_top, a->lg_top + n * HAK_PAGE);
  return (int64_t)i;
}

static void emit_large(uint16_t kind, uint64_t i, uint64_t n) {
  hkt_event ev = {.kind = kind, .tid = _hak_tls_idx, .cls = HKT_NO_CLASS,
                  .ptr = (uint64_t)(uintptr_t)page_addr(i), .size = n * HAK_PAGE};
  _hak_emit(&ev);
}

static void account(int64_t bytes) {
  uint64_t live = atomic_fetch_add_explicit(&_hak_g.large_live, (uint64_t)bytes, memory_order_relaxed) + (uint64_t)bytes;
  if (bytes > 0) _hak_stat_max(&_hak_g.large_peak, live);
}

/* Recording, a thread whose first call is a large one: its THREAD_START
 * (made when the heap is set up) must come before the event this call
 * makes, which names the thread (replay starts the thread there). The
 * set-up takes the global lock: here, before we take it. */
static inline void rec_thread_known(void) {
  if (HAK_REC_ON() && _hak_tls->state == HAK_HEAP_EMPTY) _hak_heap_init();
}

void *_hak_large_alloc(size_t size, size_t align) {
  if (size > _hak_arena.lg_size || align > _hak_arena.lg_size) return NULL;
  uint64_t n = (size + HAK_PAGE - 1) / HAK_PAGE;
  if (n == 0) n = 1;
  uint64_t extra = align > HAK_PAGE ? align / HAK_PAGE - 1 : 0;
  rec_thread_known();
  _hak_rec_wait();
  hak_lock(&_hak_global);
  if (!links) links = _hak_os_alloc_meta((_hak_arena.lg_size / HAK_PAGE) * sizeof(span_link));
  int64_t s = links ? span_take(n + extra) : -1;
  if (s < 0) { hak_unlock(&_hak_global); return NULL; }
  uint64_t i = (uint64_t)s;
  if (extra) {   /* trim to the alignment: lead and tail go back */
    uint64_t addr = (uint64_t)(uintptr_t)page_addr(i);
    uint64_t lead = (((addr + align - 1) & ~(uint64_t)(align - 1)) - addr) / HAK_PAGE;
    if (lead) span_free(i, lead);
    if (extra > lead) span_free(i + lead + n, extra - lead);
    i += lead;
  }
  HAK_WR(*pm(i), (uint32_t)n | SPAN_ALLOC);
  atomic_fetch_add_explicit(&_hak_g.large_allocs, 1, memory_order_relaxed);
  account((int64_t)(n * HAK_PAGE));
  if (HAK_REC_ON()) emit_large(HKT_EV_LARGE_MAP, i, n);
  hak_unlock(&_hak_global);
  return page_addr(i);
}

static int64_t span_of(const void *p) {
  uint64_t off = (uint64_t)((const char *)p - _hak_arena.lg_base);
  if (off >= HAK_RD(_hak_arena.lg_top) || (off & (HAK_PAGE - 1))) return -1;
  uint64_t i = off / HAK_PAGE;
  return (HAK_RD(*pm(i)) & SPAN_ALLOC) ? (int64_t)i : -1;
}

int _hak_large_free(void *p) {
  rec_thread_known();
  _hak_rec_wait();
  hak_lock(&_hak_global);
  int64_t s = span_of(p);
  if (s < 0) { hak_unlock(&_hak_global); return -1; }
  uint64_t i = (uint64_t)s, n = *pm(i) & SPAN_PAGES;
  if (HAK_REC_ON()) emit_large(HKT_EV_LARGE_UNMAP, i, n);
  if (n * HAK_PAGE >= DECOMMIT_MIN) _hak_os_decommit(page_addr(i), n * HAK_PAGE);
  span_free(i, n);
  atomic_fetch_add_explicit(&_hak_g.large_frees, 1, memory_order_relaxed);
  account(-(int64_t)(n * HAK_PAGE));
  hak_unlock(&_hak_global);
  return 0;
}

size_t _hak_large_usable(const void *p) {
  int64_t s = span_of(p);   /* a racy read is fine: p is the caller's own block */
  return s < 0 ? 0 : (size_t)(*pm((uint64_t)s) & SPAN_PAGES) * HAK_PAGE;
}

/* Grow into a free right neighbour (or the bump top), or give the tail
 * back. 0 if p now holds size bytes in place. */
int _hak_large_resize(void *p, size_t size) {
  hak_arena *a = &_hak_arena;
  if (size > a->lg_size) return -1;
  uint64_t need = (size + HAK_PAGE - 1) / HAK_PAGE;
  rec_thread_known();
  _hak_rec_wait();
  hak_lock(&_hak_global);
  int64_t s = span_of(p);
  if (s < 0) { hak_unlock(&_hak_global); return -1; }
  uint64_t i = (uint64_t)s, n = *pm(i) & SPAN_PAGES, r = i + n;
  int ok = 0;
  if (need <= n) {
    if (need < n) {
      if ((n - need) * HAK_PAGE >= DECOMMIT_MIN) _hak_os_decommit(page_addr(i + need), (n - need) * HAK_PAGE);
      span_free(i + need, n - need);
    }
    ok = 1;
  } else if (r * HAK_PAGE == a->lg_top) {
    ok = _hak_arena_lg_grow(a->lg_top + (need - n) * HAK_PAGE) == 0;
    if (ok) HAK_WR(a->lg_top, a->lg_top + (need - n) * HAK_PAGE);
  } else if (*pm(r) & SPAN_FREE) {
    uint64_t rn = *pm(r) & SPAN_PAGES;
    if (n + rn >= need) {
      bin_remove(r, rn);
      *pm(r) = 0; *pm(r + rn - 1) = 0;
      if (n + rn > need) span_free(i + need, n + rn - need);
      ok = 1;
    }
  }
  if (ok) {
    HAK_WR(*pm(i), (uint32_t)need | SPAN_ALLOC);
    account((int64_t)(need * HAK_PAGE) - (int64_t)(n * HAK_PAGE));
  }
  /* A failed attempt looked at its neighbour: recorded too (the size it
   * still has), so that replay orders it against the neighbour's changes. */
  if (HAK_REC_ON()) emit_large(HKT_EV_LARGE_MAP, i, ok ? need : n);
  hak_unlock(&_hak_global);
  return ok ? 0 : -1;
}
