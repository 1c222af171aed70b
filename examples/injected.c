/* injected.c — a correct multi-threaded workload that crashes only when
 * the allocator under it is broken (HAKMEM_INJECT).
 *
 * THREADS workers run in a ring. Each round a worker allocates a batch of
 * blocks (mostly 33..64 bytes: size class 3), fills each with a pattern
 * derived from its address and size, frees half of them itself after
 * checking the pattern, and passes the other half to the next worker,
 * which checks and frees them (cross-thread frees). Every tenth round it
 * also builds and drops a scratch list of a few hundred small blocks. A
 * block whose pattern is wrong means two owners got the same memory: the
 * program says so and aborts. Without injection it always finishes:
 *
 *   LD_PRELOAD=libhakmem.so ./injected
 *   HAKMEM_INJECT=early_release_flush:3@4/1 LD_PRELOAD=libhakmem.so ./injected   # crashes
 *   HAKMEM_INJECT=early_release_flush:3@4/1 HAKMEM_DEBUG=1 LD_PRELOAD=...        # names the bug
 * (early_release:3@40/1, the same bug at a refill, crashes it too.) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 4
#define ROUNDS  300
#define BATCH   64
#define MAILBOX (BATCH * 8)
#define SCRATCH 300

typedef struct { unsigned char *p; size_t n; } blk;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  blk q[MAILBOX];
  unsigned head, count;
  int closed;
} mailbox;

static mailbox box[THREADS];

static unsigned char pat(const void *p, size_t n, size_t i) {
  uintptr_t x = (uintptr_t)p ^ (n * 2654435761u) ^ (i * 40503u);
  return (unsigned char)(x ^ (x >> 8) ^ (x >> 16));
}

static void fill(blk b) { for (size_t i = 0; i < b.n; i++) b.p[i] = pat(b.p, b.n, i); }

static void check_and_free(blk b, int who) {
  for (size_t i = 0; i < b.n; i++) {
    if (b.p[i] != pat(b.p, b.n, i)) {
      fprintf(stderr, "injected: worker %d: block %p (%zu bytes) corrupted at byte %zu: "
              "another owner wrote into it\n", who, (void *)b.p, b.n, i);
      abort();
    }
  }
  free(b.p);
}

static void put(mailbox *m, blk b) {
  pthread_mutex_lock(&m->mu);
  while (m->count == MAILBOX) pthread_cond_wait(&m->cv, &m->mu);
  m->q[(m->head + m->count++) % MAILBOX] = b;
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
}

/* Take everything waiting; returns how many (0 and closed: finished). */
static unsigned take_all(mailbox *m, blk *out, int wait, int *closed) {
  pthread_mutex_lock(&m->mu);
  while (wait && !m->count && !m->closed) pthread_cond_wait(&m->cv, &m->mu);
  unsigned n = m->count;
  for (unsigned i = 0; i < n; i++) out[i] = m->q[(m->head + i) % MAILBOX];
  m->head = (m->head + n) % MAILBOX;
  m->count = 0;
  *closed = m->closed;
  pthread_cond_broadcast(&m->cv);
  pthread_mutex_unlock(&m->mu);
  return n;
}

static void *worker(void *arg) {
  int me = (int)(intptr_t)arg;
  mailbox *in = &box[me], *out = &box[(me + 1) % THREADS];
  uint64_t rng = 0x9e3779b97f4a7c15ull * (uint64_t)(me + 1);
  blk batch[BATCH], got[MAILBOX];
  int closed;
  for (int r = 0; r < ROUNDS; r++) {
    for (int i = 0; i < BATCH; i++) {
      rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
      size_t n = rng % 8 ? 33 + rng % 32 : 1 + rng % 400;
      batch[i].p = malloc(n);
      batch[i].n = n;
      if (!batch[i].p) { fprintf(stderr, "injected: out of memory\n"); abort(); }
      fill(batch[i]);
    }
    for (int i = 0; i < BATCH; i += 2) check_and_free(batch[i], me);
    for (int i = 1; i < BATCH; i += 2) put(out, batch[i]);
    unsigned k = take_all(in, got, 0, &closed);
    for (unsigned i = 0; i < k; i++) check_and_free(got[i], me);
    if (r % 10 == 9) {   /* a burst of temporaries: allocated, checked, dropped */
      blk tmp[SCRATCH];
      for (int i = 0; i < SCRATCH; i++) {
        tmp[i].n = 40 + (size_t)(i % 24);
        if (!(tmp[i].p = malloc(tmp[i].n))) { fprintf(stderr, "injected: out of memory\n"); abort(); }
        fill(tmp[i]);
      }
      for (int i = 0; i < SCRATCH; i++) check_and_free(tmp[i], me);
    }
  }
  pthread_mutex_lock(&out->mu);
  out->closed++;
  pthread_cond_broadcast(&out->cv);
  pthread_mutex_unlock(&out->mu);
  for (;;) {   /* drain what the previous worker still sends */
    unsigned k = take_all(in, got, 1, &closed);
    for (unsigned i = 0; i < k; i++) check_and_free(got[i], me);
    if (!k && closed) break;
  }
  return NULL;
}

int main(void) {
  pthread_t t[THREADS];
  for (int i = 0; i < THREADS; i++) {
    pthread_mutex_init(&box[i].mu, NULL);
    pthread_cond_init(&box[i].cv, NULL);
  }
  for (int i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);
  printf("injected: %d workers x %d rounds x %d blocks, all checked\n", THREADS, ROUNDS, BATCH);
  return 0;
}
