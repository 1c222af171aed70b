/* solo_seq.h — the recorder's global seq, without a lock while one thread
 * alone takes seqs.
 *
 * Every event takes its seq from one counter. While a single thread has
 * taken seqs (a one-thread program), it adds to the counter with an xadd
 * without lock prefix. The lock would cost little itself, but it makes the
 * thread wait for every store before it (the record just written, to a
 * line still in flight) to reach the cache: 6-10% of a recorded one-thread
 * program's CPU (perf, bench/mixed). One instruction is atomic against the
 * thread's own signal handlers. Another thread's first seq turns every
 * thread to the locked xadd for good; the recorder's writer thread, which
 * takes a seq now and then (module loads), borrows the counter instead and
 * gives it back.
 *
 * Each hand-over is a Dekker pair made asymmetric by membarrier(2): the
 * solo thread marks busy, loads req, and if it is 0 takes its seq plainly
 * (else through the lock); the other thread sets its bit in req, calls
 * membarrier (a full fence on every CPU that runs a thread of the process:
 * a busy store before that point is visible to the caller after it, a load
 * of req after it sees the bit), then waits for busy to be 0. Giving a
 * borrow back is clearing its bit: the borrower's locked xadds are then
 * visible to the solo thread's next load of the counter (x86 keeps loads
 * in order). Without membarrier (an old kernel, a seccomp filter) no thread
 * goes solo. */
#ifndef HKT_SOLO_SEQ_H
#define HKT_SOLO_SEQ_H

#include <stdatomic.h>
#include <stdint.h>

enum { HKT_SEQ_NONE, HKT_SEQ_SOLO, HKT_SEQ_SHARED };   /* a thread's mode */

#define HKT_SOLO_FOR_GOOD 1u   /* req: a second thread takes seqs */
#define HKT_SOLO_BORROWED 2u   /* req: the (one) borrower takes seqs now */

typedef struct hkt_solo {
  _Alignas(64) _Atomic uint8_t busy;   /* written by the solo thread only (relaxed: plain moves) */
  _Atomic uint8_t req;                 /* HKT_SOLO_ bits: the solo thread must take the lock */
  _Atomic uint8_t shared;              /* the hand-over for good is done */
  _Atomic uint8_t taken;               /* a thread went solo */
  uint8_t ok;                          /* membarrier is registered */
} hkt_solo;

/* A process (or a forked child) starts: nobody is solo. want 0: never. */
void hkt_solo_init(hkt_solo *q, int want);

/* A thread's first seq: *mode becomes SOLO for the first thread of all
 * (while no other one has come), SHARED for any other, which first makes
 * every thread shared. Lock-free: a crash handler may call it. */
void hkt_solo_join(hkt_solo *q, uint8_t *mode);

/* A thread that never joins (its mode SHARED from the start) may take
 * seqs between borrow and give_back. One borrower at a time. */
void hkt_solo_borrow(hkt_solo *q);
void hkt_solo_give_back(hkt_solo *q);

/* The seq (hkt_solo_join has run for this thread). Shared: acq_rel (the
 * lock xadd on x86), so the recorder's halt is seen after the end's seq. */
static inline __attribute__((always_inline)) uint64_t hkt_solo_seq(hkt_solo *q, uint8_t *mode,
                                                                   _Atomic uint64_t *next) {
  if (__builtin_expect(*mode == HKT_SEQ_SOLO, 1)) {
    uint8_t was = atomic_load_explicit(&q->busy, memory_order_relaxed);   /* a signal handler's event nests in ours */
    atomic_store_explicit(&q->busy, 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst);
    uint8_t req = atomic_load_explicit(&q->req, memory_order_relaxed);
    if (__builtin_expect(!req, 1)) {
      uint64_t seq = 1;
      __asm__ volatile("xaddq %0, %1" : "+r"(seq), "+m"(*(uint64_t *)next) : : "memory");
      atomic_store_explicit(&q->busy, was, memory_order_relaxed);
      return seq;
    }
    atomic_store_explicit(&q->busy, was, memory_order_relaxed);
    if (req & HKT_SOLO_FOR_GOOD) *mode = HKT_SEQ_SHARED;
  }
  return atomic_fetch_add_explicit(next, 1, memory_order_acq_rel);
}

#endif
