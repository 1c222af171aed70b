/* bench.h — what every workload in bench/ shares: a seeded PRNG, a clock,
 * block tagging (so a broken allocator is caught, not just timed), argument
 * parsing, and the one result line bench/run.sh parses.
 *
 * Workloads use plain malloc/free only, so any allocator can be put under
 * them with LD_PRELOAD. Work is a fixed number of operations, never a time
 * budget, so every allocator does exactly the same calls. */
#ifndef HAKMEM_BENCH_H
#define HAKMEM_BENCH_H

#include <inttypes.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* ---- deterministic randomness (splitmix64 seeding xorshift64*) --------- */

typedef struct bench_rng { uint64_t s; } bench_rng;

static inline bench_rng bench_rng_make(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9e3779b97f4a7c15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return (bench_rng){ z ? z : 1 };
}

static inline uint64_t bench_rand(bench_rng *r) {
  r->s ^= r->s >> 12; r->s ^= r->s << 25; r->s ^= r->s >> 27;
  return r->s * 0x2545f4914f6cdd1dull;
}

/* Uniform in [lo, hi]; the multiply-shift avoids a division per call. */
static inline size_t bench_range(bench_rng *r, size_t lo, size_t hi) {
  return lo + (size_t)(((bench_rand(r) >> 32) * (uint64_t)(hi - lo + 1)) >> 32);
}

/* ---- blocks: touched on allocation, checked on free -------------------- */

/* A block of `size` >= 8 bytes holds its size in its first 4 bytes and a
 * tag byte in its last byte: allocation writes two cache lines the way a real
 * program does, and a free of a block the allocator handed out twice or
 * overlapped is counted as corruption. */
extern atomic_ulong bench_corrupt;

static inline void *bench_block_new(size_t size) {
  unsigned char *p = malloc(size);
  if (!p) { fprintf(stderr, "bench: malloc(%zu) returned NULL\n", size); exit(2); }
  uint32_t s32 = (uint32_t)size;
  memcpy(p, &s32, sizeof s32);
  p[size - 1] = (unsigned char)(size * 31u + 7u);
  return p;
}

static inline void bench_block_free(void *q) {
  unsigned char *p = q;
  uint32_t size;
  memcpy(&size, p, sizeof size);
  if (size < 8 || size > (1u << 24) || p[size - 1] != (unsigned char)(size * 31u + 7u))
    atomic_fetch_add_explicit(&bench_corrupt, 1, memory_order_relaxed);
  free(p);
}

/* ---- clock, options, result ------------------------------------------- */

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct bench_opts {
  uint64_t ops;       /* -n: operations (malloc + free calls) to do */
  unsigned threads;   /* -t */
  uint64_t seed;      /* -s */
  size_t   slots;     /* -w: working-set slots (per thread) */
} bench_opts;

/* Parses -n OPS -t THREADS -s SEED -w SLOTS -x SCALE over the defaults
 * (OPS takes a k or M suffix; SCALE multiplies OPS, e.g. 0.25 for a quick
 * run). Exits 2 with a usage line on anything else. */
static inline void bench_parse(int argc, char **argv, bench_opts *o, const char *what) {
  double scale = 1.0;
  int c;
  while ((c = getopt(argc, argv, "n:t:s:w:x:h")) != -1) {
    char *end = NULL;
    unsigned long long v = 0;
    if (c == 'x') scale = strtod(optarg, &end);
    else if (c != 'h' && c != '?') {
      v = strtoull(optarg, &end, 0);
      if (*end == 'k') { v *= 1000; end++; }
      else if (*end == 'M') { v *= 1000000; end++; }
    }
    if (c == 'h' || c == '?' || !end || *end || (c != 'x' && v == 0) || !(scale > 0 && scale <= 1000)) {
      fprintf(stderr, "usage: %s [-n OPS] [-t THREADS] [-s SEED] [-w SLOTS] [-x SCALE]\n  %s\n", argv[0], what);
      exit(2);
    }
    switch (c) {
    case 'n': o->ops = v; break;
    case 't': o->threads = v > 64 ? 64 : (unsigned)v; break;
    case 's': o->seed = v; break;
    case 'w': o->slots = (size_t)v; break;
    }
  }
  if (optind < argc) { fprintf(stderr, "%s: unexpected argument '%s'\n", argv[0], argv[optind]); exit(2); }
  o->ops = (uint64_t)((double)o->ops * scale);
  if (o->ops == 0) o->ops = 1;
}

/* The one line bench/run.sh reads: key=value pairs. `ops` counts the
 * malloc and free calls inside the timed part (throughput is ops/secs);
 * `calls` counts every malloc-family call the workload made, set-up and
 * bookkeeping included, so a recorder can be charged bytes per call.
 * Returns the exit code: 3 if a block was found damaged. */
static inline int bench_report(const char *name, const bench_opts *o, uint64_t ops,
                               uint64_t calls, double secs) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  unsigned long bad = atomic_load(&bench_corrupt);
  printf("bench=%s threads=%u ops=%" PRIu64 " calls=%" PRIu64 " secs=%.4f ops_per_s=%.0f"
         " maxrss_kb=%ld corrupt=%lu\n", name, o->threads, ops, calls, secs,
         secs > 0 ? (double)ops / secs : 0.0, ru.ru_maxrss, bad);
  fflush(stdout);
  return bad ? 3 : 0;
}

#define BENCH_DEFINE_GLOBALS atomic_ulong bench_corrupt

#endif /* HAKMEM_BENCH_H */
