/* table.c — the two hash tables of the analysis: a u64 -> u64 map and the
 * block table. Both are open addressing with linear probing and never
 * delete one entry at a time: the map only grows (its keys are bounded:
 * SuperSlab bases, thread pairs), the block table turns freed blocks into
 * ghosts and drops the oldest ghosts in a rebuild when there are too many. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "analyze.h"

/* ---- u64 map ------------------------------------------------------------ */

static int map_grow(hka_map *m) {
  size_t ncap = m->cap ? m->cap * 2 : 64;
  uint64_t *k = malloc(ncap * sizeof *k), *v = malloc(ncap * sizeof *v);
  if (!k || !v) { free(k); free(v); return HKT_ERR_NOMEM; }
  memset(k, 0xff, ncap * sizeof *k);
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == HKA_NONE) continue;
    size_t j = hka_fib(m->keys[i], ncap);
    while (k[j] != HKA_NONE) j = (j + 1) & (ncap - 1);
    k[j] = m->keys[i];
    v[j] = m->vals[i];
  }
  free(m->keys);
  free(m->vals);
  m->keys = k;
  m->vals = v;
  m->cap = ncap;
  return 0;
}

uint64_t *hka_map_find(const hka_map *m, uint64_t key) {
  if (!m->cap) return NULL;
  size_t j = hka_fib(key, m->cap);
  while (m->keys[j] != HKA_NONE) {
    if (m->keys[j] == key) return &m->vals[j];
    j = (j + 1) & (m->cap - 1);
  }
  return NULL;
}

uint64_t *hka_map_slot(hka_map *m, uint64_t key) {
  uint64_t *v = hka_map_find(m, key);
  if (v) return v;
  if ((m->n + 1) * 4 > m->cap * 3 && map_grow(m)) return NULL;
  size_t j = hka_fib(key, m->cap);
  while (m->keys[j] != HKA_NONE) j = (j + 1) & (m->cap - 1);
  m->keys[j] = key;
  m->vals[j] = 0;
  m->n++;
  return &m->vals[j];
}

void hka_map_free(hka_map *m) {
  free(m->keys);
  free(m->vals);
  memset(m, 0, sizeof *m);
}

/* ---- blocks ------------------------------------------------------------- */

/* A zeroed slot array; big ones on huge pages: lookups are random, and a
 * TLB miss per event (a two-level walk under a hypervisor) costs more than
 * the cache miss itself. */
static hka_block *alloc_slots(size_t n) {
  size_t bytes = n * sizeof(hka_block);
  size_t align = bytes >= (4u << 20) ? (2u << 20) : 64;
  void *p = NULL;
  if (posix_memalign(&p, align, bytes)) return NULL;
  if (align > 64) madvise(p, bytes, MADV_HUGEPAGE);
  memset(p, 0, bytes);
  return p;
}

/* Re-insert into a table of ncap slots, keeping live blocks and the ghosts
 * freed at or after min_free_seq. */
static int rebuild(hka_blocks *t, size_t ncap, uint64_t min_free_seq) {
  hka_block *ns = alloc_slots(ncap);
  if (!ns) return HKT_ERR_NOMEM;
  size_t used = 0, ghosts = 0;
  for (size_t i = 0; i < t->cap; i++) {
    hka_block *b = &t->slot[i];
    if (b->state == HKA_B_EMPTY) continue;
    if (b->state == HKA_B_FREED) {
      if (b->free_seq < min_free_seq) { t->ghosts_dropped++; continue; }
      ghosts++;
    }
    size_t j = hka_fib(b->ptr >> 3, ncap);
    while (ns[j].state != HKA_B_EMPTY) j = (j + 1) & (ncap - 1);
    ns[j] = *b;
    used++;
  }
  free(t->slot);
  t->slot = ns;
  t->cap = ncap;
  t->shift = 64u - (unsigned)__builtin_ctzll(ncap);
  t->used = used;
  t->ghosts = ghosts;
  return 0;
}

/* Lookups and inserts are inline (analyze.h); growing is here. */
int hka_blocks_grow(hka_blocks *t) {
  size_t ncap = t->cap ? t->cap : 1024;
  while ((t->used + 1) * 10 > ncap * 5) ncap *= 2;
  return rebuild(t, ncap, 0);
}

/* Too many ghosts: keep about half of ghost_cap, the most recently freed.
 * The cut-off seq comes from a histogram of free seqs (one pass), so the
 * cost is amortized O(1) per free. */
int hka_blocks_trim(hka_blocks *t) {
  uint64_t lo = HKA_NONE, hi = 0;
  for (size_t i = 0; i < t->cap; i++)
    if (t->slot[i].state == HKA_B_FREED) {
      uint64_t s = t->slot[i].free_seq;
      if (s < lo) lo = s;
      if (s > hi) hi = s;
    }
  enum { NB = 256 };
  uint64_t hist[NB] = {0};
  uint64_t span = hi - lo + 1, w = span / NB + 1;
  for (size_t i = 0; i < t->cap; i++)
    if (t->slot[i].state == HKA_B_FREED) hist[(t->slot[i].free_seq - lo) / w]++;
  uint64_t keep = t->ghost_cap / 2, acc = 0, cut = lo;
  for (int k = NB - 1; k >= 0; k--) {
    if (acc + hist[k] > keep) { cut = lo + (uint64_t)(k + 1) * w; break; }
    acc += hist[k];
  }
  return rebuild(t, t->cap, cut);
}

void hka_blocks_free(hka_blocks *t) {
  free(t->slot);
  memset(t, 0, sizeof *t);
}
