/* drive.c — re-driving recorded calls (through hak_* or the process's own
 * malloc family) and keeping the map of recorded -> replay addresses. */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include "engine.h"

/* ---- driving calls ---- */

/* The address to pass for a recorded one (RP_LENIENT, RP_FUNCS): the
 * block's replay address, even after its free (a double free stays one);
 * inside a block, the same offset into its replay block (hakmem's
 * geometry: blocks from one page into a SuperSlab). */
static void *arg_addr(uint64_t rec, uint32_t cls) {
  if (!rec) return NULL;
  if (rp_e.o.mode == RP_HAKMEM) return (void *)(uintptr_t)xl(rec);
  rp_block *b = rp_map_get(&rp_blocks, rec);
  if (b) return (void *)(uintptr_t)b->rep;
  if (cls < HAK_CLASSES && cls < rp_e.hdr->num_classes && rp_e.hdr->class_size[cls]) {
    uint64_t lg = cls < HAK_TINY_CLASSES ? HAK_SS_LG_TINY : HAK_SS_LG_MID;
    uint64_t base = rec & ~((1ull << lg) - 1), bs = rp_e.hdr->class_size[cls];
    if (rec >= base + HAK_SS_HEADER) {
      uint64_t start = base + HAK_SS_HEADER + (rec - base - HAK_SS_HEADER) / bs * bs;
      if ((b = rp_map_get(&rp_blocks, start))) return (void *)(uintptr_t)(b->rep + (rec - start));
    }
  }
  return (void *)(uintptr_t)rec;
}

/* reallocarray's recorded size is count*size, wrapped on overflow. */
static void realloc_args(const rp_item *it, size_t *n, size_t *s) {
  *n = 1; *s = it->size;
  if (it->aux2 == ENOMEM && !(it->size & 1)) { *n = 2; *s = (it->size >> 1) | (1ull << 63); }
}

uint64_t rp_call_hak(const rp_item *it) {
  void *r = NULL, *old;
  size_t n, s;
  switch (it->kind) {
  case HKT_EV_MALLOC: r = hak_malloc(it->size); break;
  case HKT_EV_CALLOC: r = hak_calloc(it->aux, it->size); break;
  case HKT_EV_REALLOC:
    old = arg_addr(it->aux, HKT_NO_CLASS);
    if (it->fn == HKT_FN_REALLOCARRAY) { realloc_args(it, &n, &s); r = hak_reallocarray(old, n, s); }
    else r = hak_realloc(old, it->size);
    break;
  case HKT_EV_ALIGNED:
    switch (it->fn) {
    case HKT_FN_POSIX_MEMALIGN: if (hak_posix_memalign(&r, it->aux, it->size)) r = NULL; break;
    case HKT_FN_ALIGNED_ALLOC: r = hak_aligned_alloc(it->aux, it->size); break;
    case HKT_FN_VALLOC: r = hak_valloc(it->size); break;
    case HKT_FN_PVALLOC: r = hak_pvalloc(it->size); break;
    default: r = hak_memalign(it->aux, it->size); break;
    }
    break;
  case HKT_EV_FREE: hak_free(arg_addr(it->ptr, it->cls)); break;
  case HKT_EV_DETECTION: r = hak_realloc(arg_addr(it->ptr, it->cls), 1); break;   /* IT_RINVALID */
  }
  return (uint64_t)(uintptr_t)r;
}

uint64_t rp_call_libc(const rp_item *it) {
  void *r = NULL, *old;
  size_t n, s;
  switch (it->kind) {
  case HKT_EV_MALLOC: r = malloc(it->size); break;
  case HKT_EV_CALLOC: r = calloc(it->aux, it->size); break;
  case HKT_EV_REALLOC:
    old = arg_addr(it->aux, HKT_NO_CLASS);
    if (it->fn == HKT_FN_REALLOCARRAY) { realloc_args(it, &n, &s); r = reallocarray(old, n, s); }
    else r = realloc(old, it->size);
    break;
  case HKT_EV_ALIGNED:
    switch (it->fn) {
    case HKT_FN_POSIX_MEMALIGN: if (posix_memalign(&r, it->aux, it->size)) r = NULL; break;
    case HKT_FN_ALIGNED_ALLOC: r = aligned_alloc(it->aux, it->size); break;
    case HKT_FN_VALLOC: r = valloc(it->size); break;
    case HKT_FN_PVALLOC: r = pvalloc(it->size); break;
    default: r = memalign(it->aux, it->size); break;
    }
    break;
  case HKT_EV_FREE: free(arg_addr(it->ptr, it->cls)); break;
  case HKT_EV_DETECTION: r = realloc(arg_addr(it->ptr, it->cls), 1); break;   /* IT_RINVALID */
  }
  return (uint64_t)(uintptr_t)r;
}

/* Keep the map of live blocks (for the state report) as calls complete. */
void rp_track(const rp_item *e, uint32_t tid, uint64_t got_ptr) {
  switch (e->kind) {
  case HKT_EV_MALLOC: case HKT_EV_ALIGNED:
    if (got_ptr) rp_map_put(&rp_blocks, e->ptr, got_ptr, e->size, e->seq, tid);
    break;
  case HKT_EV_CALLOC:
    if (got_ptr) rp_map_put(&rp_blocks, e->ptr, got_ptr, e->size * e->aux, e->seq, tid);
    break;
  case HKT_EV_REALLOC:
    if (got_ptr) {
      if (e->aux) rp_map_kill(&rp_blocks, e->aux);
      rp_map_put(&rp_blocks, e->ptr, got_ptr, e->size, e->seq, tid);
    }
    break;
  case HKT_EV_FREE:
    rp_map_kill(&rp_blocks, e->ptr);
    break;
  }
}

/* The live blocks at the last event replayed, from the trace (RP_HAKMEM
 * does not track them as it goes). */
void rp_blocks_rebuild(void) {
  if (rp_e.o.mode != RP_HAKMEM || !rp_e.o.path) return;
  uint64_t upto = (uint64_t)(rp_last_done() + 1);
  rp_chain ch;   /* a forked child's blocks include those it inherited */
  char msg[512];
  static hkt_event ev[256];
  if (rp_chain_open(&ch, rp_e.o.path, msg, sizeof msg)) return;
  rp_map_free(&rp_blocks);
  if (rp_map_init(&rp_blocks)) { rp_chain_close(&ch); return; }
  int n;
  while ((n = rp_chain_batch(&ch, ev, 256)) > 0) {
    for (int i = 0; i < n; i++) {
      if (ev[i].seq >= upto) goto done;
      if (!rp_is_call(ev[i].kind)) continue;
      rp_item it = {.seq = ev[i].seq, .ptr = ev[i].ptr, .size = ev[i].size, .aux = ev[i].aux, .kind = ev[i].kind};
      rp_track(&it, ev[i].tid, xl(ev[i].ptr));
    }
  }
done:
  rp_chain_close(&ch);
}

