/* mixed_xthread — the mixed workload on 2 threads (-t), where 30% of the
 * frees are handed to the next thread, which frees them.
 *
 * Each thread runs its own working set as in `mixed`. When a step would
 * free a block, 3 times in 10 it instead puts it into an outgoing batch;
 * a full batch (itself a malloc'd block) goes onto the next thread's inbox,
 * a mutex-protected list taken whole. Every 64 steps a thread frees what
 * its inbox holds; a sender waits while its receiver has INBOX_MAX batches
 * pending, so live memory stays bounded however the threads are
 * scheduled. So 30% of frees are cross-thread frees, the case that
 * remote-free queues exist for, and the lock is taken once per batch, not
 * per block, so it does not dominate the time. */
#include <pthread.h>
#include <sched.h>
#include "bench.h"

BENCH_DEFINE_GLOBALS;

#define BATCH_CAP 126      /* makes a batch 1 KiB: a tiny block itself */
#define INBOX_MAX 8        /* batches waiting per thread: bounds live memory */

typedef struct batch {
  struct batch *next;
  size_t n;
  void *p[BATCH_CAP];
} batch;

typedef struct worker {
  pthread_t th;
  unsigned id;
  pthread_mutex_t lock;
  batch *inbox;              /* full batches other threads handed over */
  unsigned pending;          /* batches in inbox */
  batch *out;                /* being filled, for the next thread */
  uint64_t ops;              /* malloc + free calls made by this thread */
  char pad[64];
} worker;

static bench_opts o;
static worker *W;
static atomic_uint senders_left;

static void drain_inbox(worker *w) {
  pthread_mutex_lock(&w->lock);
  batch *b = w->inbox;
  w->inbox = NULL;
  w->pending = 0;
  pthread_mutex_unlock(&w->lock);
  while (b) {
    batch *next = b->next;
    for (size_t i = 0; i < b->n; i++) bench_block_free(b->p[i]);
    w->ops += b->n + 1;
    free(b);
    b = next;
  }
}

/* If the receiver is behind (descheduled on a busy machine), wait for it,
 * freeing our own inbox meanwhile so that two waiting threads never block
 * each other: the calls made stay the same however threads are scheduled. */
static void send_out(worker *w) {
  worker *to = &W[(w->id + 1) % o.threads];
  for (;;) {
    pthread_mutex_lock(&to->lock);
    if (to->pending < INBOX_MAX) break;
    pthread_mutex_unlock(&to->lock);
    drain_inbox(w);
    sched_yield();
  }
  w->out->next = to->inbox;
  to->inbox = w->out;
  to->pending++;
  pthread_mutex_unlock(&to->lock);
  w->out = NULL;
}

static void hand_off(worker *w, void *p) {
  if (!w->out) {
    w->out = malloc(sizeof(batch));
    if (!w->out) exit(2);
    w->out->n = 0;
    w->ops++;
  }
  w->out->p[w->out->n++] = p;
  if (w->out->n == BATCH_CAP) send_out(w);
}

static void *run(void *arg) {
  worker *w = arg;
  bench_rng r = bench_rng_make(o.seed, w->id);
  void **slot = calloc(o.slots, sizeof *slot);
  if (!slot) exit(2);
  uint64_t steps = o.ops / o.threads;
  w->ops = steps + 2;                     /* each step is one call; + slot array */
  for (uint64_t i = 0; i < steps; i++) {
    size_t k = bench_range(&r, 0, o.slots - 1);
    if (slot[k]) {
      if (bench_range(&r, 0, 9) < 3) { hand_off(w, slot[k]); w->ops--; }
      else bench_block_free(slot[k]);
      slot[k] = NULL;
    } else {
      slot[k] = bench_block_new(bench_range(&r, 16, 1040));
    }
    if ((i & 63) == 63) drain_inbox(w);
  }
  /* Hand over the partial batch, keep freeing what comes in until nobody
   * sends any more, then free the rest of the working set. */
  if (w->out) send_out(w);
  atomic_fetch_sub(&senders_left, 1);
  while (atomic_load(&senders_left) > 0) { drain_inbox(w); sched_yield(); }
  drain_inbox(w);
  for (size_t k = 0; k < o.slots; k++)
    if (slot[k]) { bench_block_free(slot[k]); w->ops++; }
  free(slot);
  return NULL;
}

int main(int argc, char **argv) {
  o = (bench_opts){ .ops = 4000000, .threads = 2, .seed = 42, .slots = 4096 };
  bench_parse(argc, argv, &o, "mixed on N threads, 30% of frees handed to the next thread");
  W = calloc(o.threads, sizeof *W);
  if (!W) return 2;
  atomic_init(&senders_left, o.threads);

  double t0 = bench_now();
  for (unsigned i = 0; i < o.threads; i++) {
    W[i].id = i;
    pthread_mutex_init(&W[i].lock, NULL);
    if (pthread_create(&W[i].th, NULL, run, &W[i])) { perror("pthread_create"); return 2; }
  }
  uint64_t ops = 0;
  for (unsigned i = 0; i < o.threads; i++) { pthread_join(W[i].th, NULL); ops += W[i].ops; }
  double secs = bench_now() - t0;

  int rc = bench_report("mixed_xthread", &o, ops, ops + 1, secs);   /* + W */
  free(W);
  return rc;
}
