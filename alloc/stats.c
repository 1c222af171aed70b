/* stats.c — counters: hak_stats_get, and the HAKMEM_STATS=1 report.
 *
 * Per-call counts live in each heap (no atomics on the fast path) and are
 * summed here; exited heaps were folded into _hak_g.dead. Exact when the
 * process is quiescent, approximate while threads run. */
#include <string.h>
#include "internal.h"

hak_gstats _hak_g;

#define LD(x) atomic_load_explicit(&(x), memory_order_relaxed)

void hak_stats_get(hak_stats *out) {
  _hak_init();
  memset(out, 0, sizeof *out);
  out->num_classes = HAK_CLASSES;
  hak_lock(&_hak_global);
  for (unsigned c = 0; c < HAK_CLASSES; c++) {
    hak_class_stats *s = &out->cls[c];
    hak_class_ctr sum = _hak_g.dead[c];
    for (hak_heap *h = _hak_heaps_all; h; h = h->next_all) {
      if (h->state != HAK_HEAP_LIVE) continue;
      sum.allocs += h->cache[c].allocs; sum.frees += h->cache[c].frees;
      sum.refills += h->ctr[c].refills; sum.flushes += h->ctr[c].flushes;
      sum.remote_frees += h->ctr[c].remote_frees; sum.remote_drains += h->ctr[c].remote_drains;
    }
    s->block_size = _hak_cls_size[c];
    sum.frees += LD(_hak_g.late_frees[c]);
    s->allocs = sum.allocs; s->frees = sum.frees;
    s->refills = sum.refills; s->flushes = sum.flushes;
    s->remote_frees = sum.remote_frees; s->remote_drains = sum.remote_drains;
    s->ss_registered = LD(_hak_g.ss_reg_cls[c]);
    s->ss_unregistered = LD(_hak_g.ss_unreg_cls[c]);
    s->live_blocks = sum.allocs >= sum.frees ? sum.allocs - sum.frees : 0;
    s->peak_live_blocks = LD(_hak_g.out_peak[c]);
  }
  for (unsigned c = 0; c < HAK_CLASSES; c++) out->ss_cached += _hak_empty[c].n;
  hak_unlock(&_hak_global);
  out->large_allocs = LD(_hak_g.large_allocs);
  out->large_frees = LD(_hak_g.large_frees);
  out->large_live_bytes = LD(_hak_g.large_live);
  out->large_peak_bytes = LD(_hak_g.large_peak);
  out->ss_live = LD(_hak_g.ss_live);
  out->ss_peak = LD(_hak_g.ss_peak);
  out->os_reserved_bytes = _hak_arena.ss_size + _hak_arena.lg_size;
  out->os_committed_bytes = LD(_hak_g.os_committed) + _hak_arena.lg_top;
  out->os_commits = LD(_hak_g.os_commits);
  out->os_decommits = LD(_hak_g.os_decommits);
  out->arena_base = (uint64_t)(uintptr_t)_hak_arena.ss_base;
  out->invalid_frees = LD(_hak_g.invalid_frees);
  out->threads_started = LD(_hak_g.threads_started);
  out->threads_exited = LD(_hak_g.threads_exited);
  out->ss_adopted = LD(_hak_g.ss_adopted);
}

void hak_stats_print(int fd) {
  hak_stats st;
  char line[256];
  hak_stats_get(&st);
#define OUT(...) do { int n_ = _hak_fmt(line, sizeof line, __VA_ARGS__); \
                      if (n_ > 0) _hak_os_write(fd, line, (size_t)n_ < sizeof line ? (size_t)n_ : sizeof line - 1); } while (0)
  OUT("hakmem stats: arena %#llx, %u threads started, %u exited\n",
      (unsigned long long)st.arena_base, (unsigned)st.threads_started, (unsigned)st.threads_exited);
  OUT("%6s %6s %12s %12s %10s %10s %9s %9s %8s %8s %10s\n", "class", "size", "allocs", "frees",
      "refills", "flushes", "remote", "drained", "ss_reg", "ss_unreg", "peak_out");
  for (unsigned c = 0; c < st.num_classes; c++) {
    hak_class_stats *s = &st.cls[c];
    if (!s->allocs && !s->frees && !s->ss_registered) continue;
    OUT("%5s%-1u %6u %12llu %12llu %10llu %10llu %9llu %9llu %8llu %8llu %10llu\n", "C", c, s->block_size,
        (unsigned long long)s->allocs, (unsigned long long)s->frees, (unsigned long long)s->refills,
        (unsigned long long)s->flushes, (unsigned long long)s->remote_frees,
        (unsigned long long)s->remote_drains, (unsigned long long)s->ss_registered,
        (unsigned long long)s->ss_unregistered, (unsigned long long)s->peak_live_blocks);
  }
  OUT("large: %llu allocs, %llu frees, %llu bytes live, %llu peak\n",
      (unsigned long long)st.large_allocs, (unsigned long long)st.large_frees,
      (unsigned long long)st.large_live_bytes, (unsigned long long)st.large_peak_bytes);
  OUT("superslabs: %llu live, %llu peak, %llu cached, %llu adopted\n",
      (unsigned long long)st.ss_live, (unsigned long long)st.ss_peak,
      (unsigned long long)st.ss_cached, (unsigned long long)st.ss_adopted);
  OUT("os: %llu bytes reserved, %llu committed, %llu commits, %llu decommits; %llu invalid frees\n",
      (unsigned long long)st.os_reserved_bytes, (unsigned long long)st.os_committed_bytes,
      (unsigned long long)st.os_commits, (unsigned long long)st.os_decommits,
      (unsigned long long)st.invalid_frees);
#undef OUT
}
