/* addrmap.c — recorded address -> replay address, in mmap'ed memory.
 *
 * Open addressing with linear probing, keyed by the recorded address. A
 * freed block stays in the map, marked dead, so that a double free or a
 * stale free is re-driven with the address the block had: the same bug on
 * the other side. An address that comes back (allocators reuse them) just
 * overwrites its entry, so the map is bounded by the distinct addresses of
 * the run, not by its length. */
#include <string.h>
#include <sys/mman.h>
#include "replay.h"

static rp_block *map_alloc(uint64_t cap) {
  void *p = mmap(NULL, cap * sizeof(rp_block), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

static inline uint64_t slot_of(uint64_t rec, uint64_t mask) {
  uint64_t h = rec * 0x9e3779b97f4a7c15ull;
  return (h >> 20) & mask;
}

int rp_map_init(rp_map *m) {
  memset(m, 0, sizeof *m);
  m->cap = 1u << 16;
  m->t = map_alloc(m->cap);
  return m->t ? 0 : HKT_ERR_NOMEM;
}

void rp_map_free(rp_map *m) {
  if (m->t) munmap(m->t, m->cap * sizeof(rp_block));
  memset(m, 0, sizeof *m);
}

rp_block *rp_map_get(rp_map *m, uint64_t rec) {
  if (!rec || !m->t) return NULL;
  uint64_t mask = m->cap - 1;
  for (uint64_t i = slot_of(rec, mask);; i = (i + 1) & mask) {
    if (m->t[i].rec == rec) return &m->t[i];
    if (!m->t[i].rec) return NULL;
  }
}

static int grow(rp_map *m) {
  uint64_t cap = m->cap * 2, mask = cap - 1;
  rp_block *t = map_alloc(cap);
  if (!t) return HKT_ERR_NOMEM;
  for (uint64_t j = 0; j < m->cap; j++) {
    if (!m->t[j].rec) continue;
    uint64_t i = slot_of(m->t[j].rec, mask);
    while (t[i].rec) i = (i + 1) & mask;
    t[i] = m->t[j];
  }
  munmap(m->t, m->cap * sizeof(rp_block));
  m->t = t;
  m->cap = cap;
  return 0;
}

int rp_map_put(rp_map *m, uint64_t rec, uint64_t rep, uint64_t size, uint64_t seq, uint32_t tid) {
  if (!rec) return 0;
  if ((m->n + 1) * 10 > m->cap * 7) HKT_TRY(grow(m));
  uint64_t mask = m->cap - 1, i = slot_of(rec, mask);
  while (m->t[i].rec && m->t[i].rec != rec) i = (i + 1) & mask;
  rp_block *b = &m->t[i];
  if (!b->rec) m->n++;
  if (!b->live) m->live++;
  *b = (rp_block){.rec = rec, .rep = rep, .size = size, .seq = seq, .tid = tid, .live = 1};
  return 0;
}

void rp_map_kill(rp_map *m, uint64_t rec) {
  rp_block *b = rp_map_get(m, rec);
  if (b && b->live) { b->live = 0; m->live--; }
}
