/* larson — the Larson & Krishnan server workload (after larson.cpp in
 * mimalloc-bench): threads each own an array of blocks; each step frees a
 * random block and allocates a new one of random size (8..1000 bytes) in its
 * place. After every round a thread starts its successor, which inherits
 * the array, and exits. So most frees hit blocks allocated by a thread
 * that has since exited (or by main, for the first round): the allocator
 * must hand back or adopt memory of dead threads, and keeps being asked
 * for fresh thread state.
 *
 * -t threads (4), -w blocks per thread (2000), -n total steps; a round is
 * 20000 steps per thread. */
#include <pthread.h>
#include <semaphore.h>
#include "bench.h"

BENCH_DEFINE_GLOBALS;

#define ROUND_STEPS 20000u

typedef struct chain {
  unsigned id;
  void **blocks;
  uint64_t rounds_left;
  uint64_t steps, ops;
  bench_rng rng;
  pthread_t prev;            /* the predecessor, joined by its successor */
  int has_prev;
  pthread_t last;            /* set by the last thread before it posts `done` */
  sem_t done;
  char pad[64];
} chain;

static bench_opts o;

static void *round_run(void *arg) {
  chain *c = arg;
  if (c->has_prev) pthread_join(c->prev, NULL);
  for (unsigned i = 0; i < ROUND_STEPS; i++) {
    size_t k = bench_range(&c->rng, 0, o.slots - 1);
    bench_block_free(c->blocks[k]);
    c->blocks[k] = bench_block_new(bench_range(&c->rng, 8, 1000));
  }
  c->steps += ROUND_STEPS;
  c->ops += 2 * ROUND_STEPS;
  if (--c->rounds_left > 0) {
    c->prev = pthread_self();
    c->has_prev = 1;
    pthread_t next;
    if (pthread_create(&next, NULL, round_run, c)) { perror("pthread_create"); exit(2); }
  } else {
    c->last = pthread_self();
    sem_post(&c->done);
  }
  return NULL;
}

int main(int argc, char **argv) {
  o = (bench_opts){ .ops = 8000000, .threads = 4, .seed = 42, .slots = 2000 };
  bench_parse(argc, argv, &o, "larson server workload: replace random blocks, threads replaced every round");
  uint64_t per_thread = o.ops / 2 / o.threads;        /* a step is a free and a malloc */
  uint64_t rounds = per_thread / ROUND_STEPS ? per_thread / ROUND_STEPS : 1;
  chain *C = calloc(o.threads, sizeof *C);
  if (!C) return 2;
  uint64_t ops = 1;

  /* Main fills every array, so the first round frees main's blocks. */
  for (unsigned t = 0; t < o.threads; t++) {
    C[t].id = t;
    C[t].rng = bench_rng_make(o.seed, t);
    C[t].rounds_left = rounds;
    C[t].blocks = malloc(o.slots * sizeof(void *));
    if (!C[t].blocks) return 2;
    for (size_t k = 0; k < o.slots; k++) C[t].blocks[k] = bench_block_new(bench_range(&C[t].rng, 8, 1000));
    ops += 1 + o.slots;
    sem_init(&C[t].done, 0, 0);
  }

  double t0 = bench_now();
  for (unsigned t = 0; t < o.threads; t++) {
    pthread_t th;
    if (pthread_create(&th, NULL, round_run, &C[t])) { perror("pthread_create"); return 2; }
  }
  for (unsigned t = 0; t < o.threads; t++) {
    while (sem_wait(&C[t].done) != 0) {}
    pthread_join(C[t].last, NULL);
    ops += C[t].ops;
  }
  double secs = bench_now() - t0;

  /* Only the rounds are timed; filling and emptying the arrays count in
   * `calls` (+1 for C itself), not in throughput. */
  uint64_t timed = 0;
  for (unsigned t = 0; t < o.threads; t++) {
    timed += C[t].ops;
    for (size_t k = 0; k < o.slots; k++) bench_block_free(C[t].blocks[k]);
    free(C[t].blocks);
    ops += 1 + o.slots;
  }
  free(C);
  return bench_report("larson", &o, timed, ops + 1, secs);
}
