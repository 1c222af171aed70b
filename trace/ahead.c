/* ahead.c — decode ahead (ahead.h): a producer thread decodes batches
 * from the reader straight into a ring of slots; the caller takes them in
 * order. When the caller would wait for a slot, the producer is the
 * bound: the caller then decompresses the next zstd frame for the reader
 * (_hkt_reader_async/_hkt_reader_help), so the producer only decodes.
 *
 * Each side waits for the other by spinning briefly (a batch takes the
 * producer some microseconds) and then on a futex; a side says it sleeps
 * before its last look, so the other's store either is seen or wakes it. */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "ahead.h"
#include "hkt_internal.h"

/* Batches in flight, a power of two: while the caller decompresses a
 * frame for the reader (about 1 ms) the producer goes on decoding, some
 * 60-80 batches of 256 events in that time (64 slots: 2 MB). */
#define NSLOT 64u
#define SPIN_NS 20000u     /* spin before sleeping: a batch takes the producer ~12 us */

typedef struct slot {
  int n;                   /* events; 0 end; < 0 the reader's error */
  uint64_t offset;         /* hkt_reader_offset after this batch */
  hkt_event ev[HKT_BATCH];
  char str[HKT_MAX_STR + 1];   /* a batch ends with its one event with a string */
  uint8_t bid[256];
} slot;

/* The two sides' words 64 bytes apart, so on lines of their own (the
 * memory source gives 16-byte alignment, not 64: padding, not _Alignas). */
struct hkt_ahead {
  hkt_reader *r;
  slot *slots;
  pthread_t th;
  int threaded;
  int helped;                             /* the reader posts frames for _hkt_reader_help */
  char pad0[64];
  _Atomic uint32_t filled;                /* producer: slots filled */
  _Atomic uint32_t prod_sleeps;
  char pad1[64];
  _Atomic uint32_t taken;                 /* consumer: slots given back */
  _Atomic uint32_t cons_sleeps;
  _Atomic int stop;
  char pad2[64];
  uint32_t held;                          /* consumer: 1 while it holds slot `taken` */
  int end_rc;                             /* consumer: what the last slot said */
  int ended;
  uint64_t offset;
};

static void futex_wait(_Atomic uint32_t *w, uint32_t seen) {
  syscall(SYS_futex, w, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
}
static void futex_wake(_Atomic uint32_t *w) {
  syscall(SYS_futex, w, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* Wait until *w differs from `seen` (or stop), saying so in *sleeps.
 * Spins for SPIN_NS first, by the clock: a pause takes 5 ns on one CPU
 * and 50 on another, and a futex sleep costs the waker a syscall and
 * the sleeper a wake-up, several microseconds each. */
static void wait_change(hkt_ahead *a, _Atomic uint32_t *w, uint32_t seen, _Atomic uint32_t *sleeps) {
  uint64_t t0 = 0;
  for (unsigned i = 0;; i++) {
    if (atomic_load_explicit(w, memory_order_acquire) != seen || atomic_load_explicit(&a->stop, memory_order_relaxed))
      return;
    __builtin_ia32_pause();
    if (i % 32 == 31) {
      uint64_t t = hkt_mono_ns();
      if (!t0) t0 = t;
      else if (t - t0 > SPIN_NS) break;
    }
  }
  while (atomic_load_explicit(w, memory_order_acquire) == seen && !atomic_load(&a->stop)) {
    atomic_store(sleeps, 1);
    if (atomic_load(w) == seen && !atomic_load(&a->stop)) futex_wait(w, seen);
    atomic_store(sleeps, 0);
  }
}

/* The waker takes the flag: one wake per sleep, not one per batch
 * published until the sleeper gets its CPU back (a syscall each). */
static void publish(_Atomic uint32_t *w, _Atomic uint32_t *sleeps) {
  atomic_fetch_add(w, 1);   /* seq_cst: before the look at *sleeps */
  if (atomic_load_explicit(sleeps, memory_order_relaxed) && atomic_exchange(sleeps, 0)) futex_wake(w);
}

/* The batch was decoded straight into s (hkt_reader_batch_into); the one
 * string and build-id it may end with still point into the reader: keep
 * copies in s. Decoding into the slot, not copying a batch there, saves
 * the producer ~6 ns an event (its memmove); the misses on slot lines the
 * consumer read last did not show in the decoder's samples (mixed -x 2.5,
 * 64 slots). */
static void keep_strings(slot *s, int n) {
  hkt_event *last = &s->ev[n - 1];
  if (last->str) {
    size_t l = strnlen(last->str, HKT_MAX_STR);
    memcpy(s->str, last->str, l);
    s->str[l] = 0;
    last->str = s->str;
  }
  if (last->bid) {
    if (last->bid_len > sizeof s->bid) last->bid_len = sizeof s->bid;
    memcpy(s->bid, last->bid, last->bid_len);
    last->bid = s->bid;
  }
}

static void *producer(void *arg) {
  hkt_ahead *a = arg;
  for (uint32_t f = 0;; f++) {
    uint32_t t;
    while (f - (t = atomic_load_explicit(&a->taken, memory_order_acquire)) >= NSLOT) {
      wait_change(a, &a->taken, t, &a->prod_sleeps);
      if (atomic_load(&a->stop)) return NULL;
    }
    if (atomic_load_explicit(&a->stop, memory_order_relaxed)) return NULL;
    slot *s = &a->slots[f % NSLOT];
    int n = hkt_reader_batch_into(a->r, s->ev, HKT_BATCH);
    if (n > 0) keep_strings(s, n);
    s->n = n;
    s->offset = hkt_reader_offset(a->r);
    publish(&a->filled, &a->cons_sleeps);
    if (n <= 0) return NULL;
  }
}

int hkt_ahead_open(hkt_ahead **out, hkt_reader *r) {
  hkt_ahead *a = hkt_mem_alloc(sizeof *a);
  if (!a) return HKT_ERR_NOMEM;
  a->r = r;
  a->slots = hkt_mem_alloc(NSLOT * sizeof *a->slots);
  /* The consumer decompresses the next frame when it would wait (see
   * hkt_ahead_batch). Before the producer reads: an error (events were
   * read already) leaves the reader as it was, and without a producer
   * the reader takes back the jobs nobody took. */
  if (a->slots && _hkt_reader_async(r) == 0) a->helped = 1;
  if (a->slots) a->threaded = pthread_create(&a->th, NULL, producer, a) == 0;
  *out = a;
  return 0;
}

int hkt_ahead_batch(hkt_ahead *a, const hkt_event **evs) {
  if (!a->threaded) {
    int n = hkt_reader_batch(a->r, evs);
    a->offset = hkt_reader_offset(a->r);
    return n;
  }
  if (a->ended) return a->end_rc;
  uint32_t t = atomic_load_explicit(&a->taken, memory_order_relaxed);
  if (a->held) {   /* the previous batch is done with */
    publish(&a->taken, &a->prod_sleeps);
    t++;
    a->held = 0;
  }
  /* Waiting means the producer is the bound: take the next frame's
   * decompression off it, so that it only decodes. (Helping only with
   * the time waited, so that this thread does not become the bound when
   * the two sides are close, measured the same on mixed and larson.) */
  while (a->helped && atomic_load_explicit(&a->filled, memory_order_acquire) == t && _hkt_reader_help(a->r)) {}
  wait_change(a, &a->filled, t, &a->cons_sleeps);
  slot *s = &a->slots[t % NSLOT];
  a->offset = s->offset;
  if (s->n <= 0) {
    a->ended = 1;
    a->end_rc = s->n;
    return s->n;
  }
  a->held = 1;
  *evs = s->ev;
  return s->n;
}

uint64_t hkt_ahead_offset(const hkt_ahead *a) { return a->offset; }

void hkt_ahead_close(hkt_ahead *a) {
  if (!a) return;
  if (a->threaded) {
    atomic_store(&a->stop, 1);
    futex_wake(&a->taken);
    pthread_join(a->th, NULL);
  }
  hkt_mem_free(a->slots);
  hkt_mem_free(a);
}
