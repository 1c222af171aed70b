/* mixed — random sizes 16..1040 bytes on one thread.
 *
 * A working set of slots; each step picks a random slot and frees its block
 * if it holds one, or allocates a new random-size block into it if empty.
 * The set settles at half full (~1 MiB live with the default 4096 slots),
 * so the allocator sees interleaved allocs and frees of every tiny class
 * with a realistic reuse distance. */
#include "bench.h"

BENCH_DEFINE_GLOBALS;

int main(int argc, char **argv) {
  bench_opts o = { .ops = 8000000, .threads = 1, .seed = 42, .slots = 4096 };
  bench_parse(argc, argv, &o, "one thread, random alloc/free of 16..1040 bytes in a working set");
  void **slot = calloc(o.slots, sizeof *slot);
  if (!slot) return 2;
  bench_rng r = bench_rng_make(o.seed, 0);
  uint64_t ops = 2;                      /* the slot array's calloc and free */

  double t0 = bench_now();
  for (uint64_t i = 0; i < o.ops; i++) {
    size_t k = bench_range(&r, 0, o.slots - 1);
    if (slot[k]) { bench_block_free(slot[k]); slot[k] = NULL; }
    else slot[k] = bench_block_new(bench_range(&r, 16, 1040));
  }
  for (size_t k = 0; k < o.slots; k++)
    if (slot[k]) { bench_block_free(slot[k]); ops++; }
  double secs = bench_now() - t0;

  free(slot);
  return bench_report("mixed", &o, ops - 2 + o.ops, ops + o.ops, secs);
}
