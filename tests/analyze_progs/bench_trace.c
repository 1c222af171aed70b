/* bench_trace.c — write a synthetic larson-like trace for analysis
 * benchmarks: LIVE blocks in slots; each step frees a random slot's block
 * and allocates a new one, from 4 threads, 8 size classes, addresses reused
 * LIFO per class the way an allocator does. The live set is the same
 * whatever the length, so traces of N and 10N events must analyze in the
 * same memory.
 *
 *   bench_trace EVENTS LIVE OUT.hkt.zst
 *
 * Built by tests/test_analyze.c against libhakmem_core.a (the writer). */
#include <stdio.h>
#include <stdlib.h>

#include "hakmem/trace.h"

#define CLASSES 8
#define SS_SPAN (1ull << 30)          /* one big SuperSlab per class */

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

int main(int argc, char **argv) {
  if (argc != 4) { fprintf(stderr, "usage: bench_trace EVENTS LIVE OUT\n"); return 2; }
  uint64_t n = strtoull(argv[1], 0, 0), live = strtoull(argv[2], 0, 0);
  if (!live) return 2;
  hkt_header h = {.version = HKT_FORMAT_VERSION, .pid = 1, .clock = "monotonic", .cmdline = "bench_trace",
                  .arena_base = 0x200000000000ull, .num_classes = CLASSES,
                  .class_size = {8, 16, 32, 64, 128, 256, 512, 1024}};
  hkt_writer *w;
  int e = hkt_writer_open(&w, argv[3], &h);
  if (HKT_IS_ERR(e)) { fprintf(stderr, "bench_trace: %s: %s\n", argv[3], hkt_strerror(e)); return 1; }
  uint64_t *slot = calloc(live, sizeof *slot);
  uint8_t *slot_cls = calloc(live, 1);
  uint64_t *freelist[CLASSES], next[CLASSES];
  size_t nfree[CLASSES] = {0};
  if (!slot || !slot_cls) return 1;
  uint64_t seq = 0, t = 0;
  for (int c = 0; c < CLASSES; c++) {
    if (!(freelist[c] = malloc(live * sizeof(uint64_t)))) return 1;
    next[c] = h.arena_base + (uint64_t)c * SS_SPAN;
    hkt_event ev = {.seq = seq++, .kind = HKT_EV_SS_REGISTER, .ptr = next[c], .size = SS_SPAN, .cls = (uint32_t)c,
                    .aux2 = (uint64_t)c + 1};
    if (HKT_IS_ERR(hkt_writer_put(w, &ev))) return 1;
  }
  while (seq + 2 < n) {
    uint64_t i = rnd() % live;
    uint32_t tid = (uint32_t)(rnd() % 4);
    t += 50;
    if (slot[i]) {
      unsigned c = slot_cls[i];
      hkt_event ev = {.seq = seq++, .time_ns = t, .tid = tid, .kind = HKT_EV_FREE, .ptr = slot[i], .cls = c,
                      .caller = 0x401000};
      if (HKT_IS_ERR(hkt_writer_put(w, &ev))) return 1;
      freelist[c][nfree[c]++] = slot[i];
    }
    unsigned c = (unsigned)(rnd() % CLASSES);
    uint64_t p = nfree[c] ? freelist[c][--nfree[c]] : (next[c] += h.class_size[c]);
    hkt_event ev = {.seq = seq++, .time_ns = t, .tid = tid, .kind = HKT_EV_MALLOC, .ptr = p,
                    .size = h.class_size[c] - 3, .cls = c, .caller = 0x402000 + 16 * (rnd() % 64)};
    if (HKT_IS_ERR(hkt_writer_put(w, &ev))) return 1;
    slot[i] = p;
    slot_cls[i] = (uint8_t)c;
  }
  hkt_event end = {.seq = seq++, .time_ns = t, .kind = HKT_EV_END, .fn = HKT_END_EXIT, .cls = HKT_NO_CLASS};
  if (HKT_IS_ERR(hkt_writer_put(w, &end))) return 1;
  e = hkt_writer_close(w, 1);
  if (HKT_IS_ERR(e)) { fprintf(stderr, "bench_trace: %s: %s\n", argv[3], hkt_strerror(e)); return 1; }
  printf("%llu\n", (unsigned long long)seq);
  return 0;
}
