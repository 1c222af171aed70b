/* churn — rounds of short-lived threads.
 *
 * Each round starts -t threads (2) and joins them. A thread frees the
 * blocks its predecessor in the same seat left behind, allocates a batch of
 * -w blocks (1000) of 16..1040 bytes, frees them in random order except 64
 * that it leaves to its successor, and exits. Thread start-up and exit cost
 * (cache set-up, the flush at exit, memory of exited threads freed by new
 * ones) is a large share of the time here, the way it is in thread-pool-less
 * servers and parallel build tools. */
#include <pthread.h>
#include "bench.h"

BENCH_DEFINE_GLOBALS;

#define KEEP 64

typedef struct seat {
  void *left[KEEP];          /* blocks handed from one round's thread to the next */
  size_t nleft;
  bench_rng rng;
  uint64_t calls;
  char pad[64];
} seat;

static bench_opts o;

static void *one_thread(void *arg) {
  seat *s = arg;
  for (size_t i = 0; i < s->nleft; i++) bench_block_free(s->left[i]);
  s->calls += s->nleft;
  void **b = malloc(o.slots * sizeof *b);
  if (!b) exit(2);
  for (size_t i = 0; i < o.slots; i++) b[i] = bench_block_new(bench_range(&s->rng, 16, 1040));
  /* Free in random order: shuffle the array head-first, keeping the tail. */
  size_t keep = o.slots < KEEP ? o.slots : KEEP;
  for (size_t i = 0; i + keep < o.slots; i++) {
    size_t j = bench_range(&s->rng, i, o.slots - 1);
    void *t = b[i]; b[i] = b[j]; b[j] = t;
    bench_block_free(b[i]);
  }
  for (size_t i = 0; i < keep; i++) s->left[i] = b[o.slots - keep + i];
  s->nleft = keep;
  free(b);
  s->calls += 2 + o.slots + (o.slots - keep);
  return NULL;
}

int main(int argc, char **argv) {
  o = (bench_opts){ .ops = 2000000, .threads = 2, .seed = 42, .slots = 1000 };
  bench_parse(argc, argv, &o, "rounds of short-lived threads allocating and freeing a batch");
  seat *S = calloc(o.threads, sizeof *S);
  if (!S) return 2;
  for (unsigned t = 0; t < o.threads; t++) S[t].rng = bench_rng_make(o.seed, t);
  uint64_t per_round = (uint64_t)o.threads * 2 * o.slots;
  uint64_t rounds = o.ops / per_round ? o.ops / per_round : 1;
  pthread_t th[64];

  double t0 = bench_now();
  for (uint64_t r = 0; r < rounds; r++) {
    for (unsigned t = 0; t < o.threads; t++)
      if (pthread_create(&th[t], NULL, one_thread, &S[t])) { perror("pthread_create"); return 2; }
    for (unsigned t = 0; t < o.threads; t++) pthread_join(th[t], NULL);
  }
  uint64_t ops = 0;
  for (unsigned t = 0; t < o.threads; t++) {
    for (size_t i = 0; i < S[t].nleft; i++) bench_block_free(S[t].left[i]);
    ops += S[t].calls + S[t].nleft;
  }
  double secs = bench_now() - t0;

  free(S);
  return bench_report("churn", &o, ops, ops + 2, secs);
}
