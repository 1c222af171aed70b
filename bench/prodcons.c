/* prodcons — producers allocate messages, consumers free them.
 *
 * -t threads (2) split into producers and consumers (half each, at least
 * one of each). A producer allocates messages of varied size (mostly small,
 * some up to 1040 bytes: 16..128 three times in four, else 16..1040),
 * writes them, and passes them in batches (a malloc'd 1 KiB block holding
 * 126 pointers) through one bounded queue; a consumer checks and frees every
 * message and the batch. So every message is freed by a thread that did not
 * allocate it: the allocator's remote-free path under a steady stream, with
 * the producer's cache always draining and the consumer's always filling. */
#include <pthread.h>
#include "bench.h"

BENCH_DEFINE_GLOBALS;

#define BATCH_CAP 126
#define QUEUE_CAP 64       /* batches in flight: bounds live memory */

typedef struct batch {
  size_t n;
  void *p[BATCH_CAP];
} batch;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t not_empty, not_full;
  batch *ring[QUEUE_CAP];
  unsigned head, count;
  unsigned producers_left;
} q = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, {0}, 0, 0, 0 };

static bench_opts o;
static unsigned nprod, ncons;
static atomic_ullong calls_total;

static void put(batch *b) {
  pthread_mutex_lock(&q.lock);
  while (q.count == QUEUE_CAP) pthread_cond_wait(&q.not_full, &q.lock);
  q.ring[(q.head + q.count++) % QUEUE_CAP] = b;
  pthread_cond_signal(&q.not_empty);
  pthread_mutex_unlock(&q.lock);
}

/* NULL once every producer is done and the queue is empty. */
static batch *take(void) {
  pthread_mutex_lock(&q.lock);
  while (q.count == 0 && q.producers_left > 0) pthread_cond_wait(&q.not_empty, &q.lock);
  batch *b = NULL;
  if (q.count) {
    b = q.ring[q.head];
    q.head = (q.head + 1) % QUEUE_CAP;
    q.count--;
    pthread_cond_signal(&q.not_full);
  }
  pthread_mutex_unlock(&q.lock);
  return b;
}

static void *producer(void *arg) {
  bench_rng r = bench_rng_make(o.seed, (uintptr_t)arg);
  uint64_t msgs = o.ops / 2 / nprod, calls = 0;
  batch *b = NULL;
  for (uint64_t i = 0; i < msgs; i++) {
    if (!b) {
      if (!(b = malloc(sizeof *b))) exit(2);
      b->n = 0;
      calls++;
    }
    size_t size = bench_range(&r, 0, 3) ? bench_range(&r, 16, 128) : bench_range(&r, 16, 1040);
    b->p[b->n++] = bench_block_new(size);
    if (b->n == BATCH_CAP) { put(b); b = NULL; }
  }
  if (b) put(b);
  atomic_fetch_add(&calls_total, calls + msgs);
  pthread_mutex_lock(&q.lock);
  if (--q.producers_left == 0) pthread_cond_broadcast(&q.not_empty);
  pthread_mutex_unlock(&q.lock);
  return NULL;
}

static void *consumer(void *unused) {
  (void)unused;
  uint64_t calls = 0;
  batch *b;
  while ((b = take())) {
    for (size_t i = 0; i < b->n; i++) bench_block_free(b->p[i]);
    calls += b->n + 1;
    free(b);
  }
  atomic_fetch_add(&calls_total, calls);
  return NULL;
}

int main(int argc, char **argv) {
  o = (bench_opts){ .ops = 3000000, .threads = 2, .seed = 42, .slots = 0 };
  bench_parse(argc, argv, &o, "producers allocate messages, consumers free them");
  if (o.threads < 2) o.threads = 2;
  nprod = o.threads / 2;
  ncons = o.threads - nprod;
  q.producers_left = nprod;
  pthread_t th[64];

  double t0 = bench_now();
  for (unsigned i = 0; i < o.threads; i++) {
    int err = i < nprod ? pthread_create(&th[i], NULL, producer, (void *)(uintptr_t)i)
                        : pthread_create(&th[i], NULL, consumer, NULL);
    if (err) { perror("pthread_create"); return 2; }
  }
  for (unsigned i = 0; i < o.threads; i++) pthread_join(th[i], NULL);
  double secs = bench_now() - t0;

  uint64_t calls = atomic_load(&calls_total);
  return bench_report("prodcons", &o, calls, calls, secs);
}
