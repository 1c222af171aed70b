/* state.c — what a replay prints where it stops without an end: the
 * allocator's state at that point, read from its own structures.
 *
 * Called with every replay thread parked (some possibly inside the
 * allocator, holding a lock), so it takes no lock and calls no hak_*: it
 * only reads the arena's registry, the heaps list and the replay's map of
 * live blocks. Also the one-line and JSON forms of events used in reports. */
#include <inttypes.h>
#include <string.h>
#include "internal.h"
#include "replay.h"

static const char *where_name(unsigned w) {
  static const char *n[] = {"nowhere", "active", "warm", "full", "shared", "empty-cache"};
  return w < sizeof n / sizeof n[0] ? n[w] : "?";
}

static void live_blocks(FILE *f, unsigned max) {
  uint64_t n = 0, bytes = 0;
  for (uint64_t i = 0; i < rp_blocks.cap; i++)
    if (rp_blocks.t[i].rec && rp_blocks.t[i].live) { n++; bytes += rp_blocks.t[i].size; }
  fprintf(f, "live blocks: %" PRIu64 " (%" PRIu64 " bytes requested)\n", n, bytes);
  unsigned shown = 0;
  for (uint64_t i = 0; i < rp_blocks.cap && shown < max; i++) {
    const rp_block *b = &rp_blocks.t[i];
    if (!b->rec || !b->live) continue;
    const char *parent;
    uint64_t seq = rp_own_seq(b->seq, &parent);
    fprintf(f, "  0x%" PRIx64 " size %" PRIu64 ", allocated at seq %" PRIu64 "%s%s by thread %u", b->rec, b->size,
            seq, parent ? " of the parent's trace " : "", parent ? parent : "", b->tid);
    if (b->rep != b->rec) fprintf(f, " (replay address 0x%" PRIx64 ")", b->rep);
    fputc('\n', f);
    shown++;
  }
  if (n > shown) fprintf(f, "  ... %" PRIu64 " more\n", n - shown);
}

static void superslabs(FILE *f, unsigned max) {
  const hak_arena *a = &_hak_arena;
  if (!a->ssmap) { fprintf(f, "SuperSlabs: none (the allocator never started)\n"); return; }
  uint64_t chunks = a->ss_top >> HAK_CHUNK_LG, n = 0;
  const hak_ss *prev = NULL;
  for (uint64_t i = 0; i < chunks; i++) {
    const hak_ss *ss = a->ssmap[i];
    if (ss && ss != prev) n++;
    prev = ss;
  }
  fprintf(f, "SuperSlabs registered: %" PRIu64 "\n", n);
  unsigned shown = 0;
  prev = NULL;
  for (uint64_t i = 0; i < chunks && shown < max; i++) {
    const hak_ss *ss = a->ssmap[i];
    if (!ss || ss == prev) { prev = ss; continue; }
    prev = ss;
    char owner[16];
    if (ss->owner == HAK_NO_OWNER) snprintf(owner, sizeof owner, "none");
    else snprintf(owner, sizeof owner, "%u", ss->owner);
    fprintf(f, "  #%u %p class %u (%u B) owner %s %s: %u/%u carved, %u live, %u on its freelist%s\n",
            ss->id, (const void *)ss, ss->cls, ss->block_size, owner, where_name(ss->where),
            ss->carved, ss->capacity, ss->live, ss->nfree,
            atomic_load_explicit(&((hak_ss *)ss)->remote, memory_order_relaxed) ? ", remote frees pending" : "");
    shown++;
  }
  if (n > shown) fprintf(f, "  ... %" PRIu64 " more\n", n - shown);
}

static void caches(FILE *f, unsigned max) {
  unsigned shown = 0;
  fprintf(f, "thread caches:\n");
  for (const hak_heap *h = _hak_heaps_all; h; h = h->next_all) {
    if (h->state != HAK_HEAP_LIVE) continue;
    uint64_t blocks = 0;
    for (unsigned c = 0; c < HAK_CLASSES; c++) blocks += h->cache[c].count;
    fprintf(f, "  thread %u: %" PRIu64 " blocks cached", h->idx, blocks);
    for (unsigned c = 0; c < HAK_CLASSES; c++) {
      const hak_tcache *tc = &h->cache[c];
      if (!tc->count) continue;
      fprintf(f, "; C%u: %u (", c, tc->count);
      unsigned k = tc->count < 3 ? tc->count : 3;
      for (unsigned j = 0; j < k; j++) fprintf(f, "%s%p", j ? " " : "", tc->slot[tc->count - 1 - j]);
      fprintf(f, "%s)", tc->count > k ? " ..." : "");
    }
    fputc('\n', f);
    if (++shown >= max) { fprintf(f, "  ...\n"); break; }
  }
  if (!shown) fprintf(f, "  (no live thread)\n");
}

void rp_dump_state(FILE *f, unsigned max_lines) {
  rp_blocks_rebuild();
  live_blocks(f, max_lines);
  superslabs(f, max_lines);
  caches(f, max_lines);
  fflush(f);
}

/* ---- events in reports ---- */

void rp_event_text(char *buf, size_t n, const hkt_event *e) {
  int k = snprintf(buf, n, "%s", hkt_kind_name(e->kind));
  if (k < 0 || (size_t)k >= n) return;
  if (e->kind == HKT_EV_DETECTION) k += snprintf(buf + k, n - (size_t)k, " %s", hkt_detect_name(e->fn));
  else if (e->fn) k += snprintf(buf + k, n - (size_t)k, " %s", hkt_fn_name(e->fn));
  if ((size_t)k >= n) return;
  snprintf(buf + k, n - (size_t)k,
           " thread %u ptr 0x%" PRIx64 " size %" PRIu64 " aux 0x%" PRIx64 " aux2 %" PRIu64 " aux3 %" PRIu64,
           e->tid, e->ptr, e->size, e->aux, e->aux2, e->aux3);
  if (e->cls != HKT_NO_CLASS) {
    size_t l = strlen(buf);
    snprintf(buf + l, n - l, " class %u", e->cls);
  }
}

void rp_event_json(FILE *f, const hkt_event *e) {
  fprintf(f, "{\"seq\":%" PRIu64 ",\"kind\":\"%s\",\"fn\":%u,\"thread\":%u,\"class\":", e->seq,
          hkt_kind_name(e->kind), e->fn, e->tid);
  if (e->cls == HKT_NO_CLASS) fputs("null", f); else fprintf(f, "%u", e->cls);
  fprintf(f, ",\"ptr\":\"0x%" PRIx64 "\",\"size\":%" PRIu64 ",\"aux\":\"0x%" PRIx64 "\",\"aux2\":%" PRIu64
             ",\"aux3\":%" PRIu64 "}", e->ptr, e->size, e->aux, e->aux2, e->aux3);
}
