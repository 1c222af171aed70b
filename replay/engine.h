/* engine.h — what the replay engine's files share (engine.c: turnstile,
 * replay threads, checking, controller; feed.c: the reader thread; drive.c:
 * re-driving calls and the address map). Internal to replay/. */
#ifndef HAK_REPLAY_ENGINE_H
#define HAK_REPLAY_ENGINE_H

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include "internal.h"
#include "replay.h"
#include "hkt_internal.h"   /* _hkt_reader_help */

#define MAX_AHEAD  (1u << 17)   /* docs/replay.md: how far the reader runs ahead of the turn */
#define QMASK      (MAX_AHEAD - 1)    /* a queue holds MAX_AHEAD items */
#define OWN_CAP    (4u * MAX_AHEAD)   /* the owner ring; the reader stays under OWN_CAP ahead */
#define MAX_TIDS   (1u << 20)
#define BATCH      32
#define RUN_LOOK   32   /* how far advance() looks for the owner of the next run */
#define HUGE_SZ    (2u << 20)   /* a transparent huge page: the rings' alignment */

/* IT_NOBODY: made with no thread index (HAK_NO_OWNER - 1), queued to the
 * latest caller's thread. */
enum { IT_DRIVE = 1, IT_EXIT = 2, IT_RINVALID = 4, IT_START = 8, IT_NOBODY = 16, IT_KEEP = 0x100 };

/* One queued event: what is driven and compared, in one cache line (the
 * reader writes it on one core, its replay thread reads it on another).
 * Its thread index is its queue's, but for IT_NOBODY (item_tid). ptr to
 * aux3 and kind to cls are laid out as in hkt_event, so the reader copies
 * them as two blocks (feed.c, put_item). */
typedef struct rp_item {
  uint64_t ptr, size, aux, aux2, aux3;
  uint64_t seq;
  union {                           /* 2^48 events: beyond any trace */
    struct { uint64_t rseq : 48, flags : 16; };
    uint64_t rseq_flags;            /* both, to write at once (x86-64 ABI: rseq low) */
  };
  uint16_t kind, fn;
  uint32_t cls;
} rp_item;
_Static_assert(sizeof(rp_item) == 64, "rp_item is one cache line");

/* Fields on separate cache lines by who writes them, so that neither side
 * makes the other miss per event: what is fixed once the thread starts
 * (read by both), the reader's own bookkeeping, `tail` (the reader writes
 * it once per batch), the replay thread's (head, drive), both (sleeping). */
typedef struct rp_thread {
  _Alignas(64) rp_item *q;       /* fixed from the thread's start */
  uint32_t tid;
  int revived;                   /* made after its thread's exit (late frees) */
  pthread_t pt;
  _Alignas(64) uint64_t ltail;   /* reader: items written */
  uint64_t qlim;                 /* reader: `head` when last read + MAX_AHEAD (it only grows) */
  int exiting, dirty, rfree, huge;
  uint16_t last_kind;            /* reader: this thread's last call event */
  uint64_t last_ptr;
  struct rp_thread *next;        /* reader: dirty list; pool */
  struct rp_thread *next_exiting;
  _Alignas(64) _Atomic uint64_t tail;   /* items published by the reader */
  _Alignas(64) _Atomic uint64_t head;   /* items consumed (checked or driven) */
  uint64_t drive;                /* next item to look at for a call */
  int ahead;                     /* the call being driven runs before its turn (drive_checked) */
  uint64_t digest;               /* of the events this thread made (digest_of); summed at its end */
  uint64_t last_done;            /* seq + 1 of the last event it made ahead; the max goes to rp_e.ahead_seq */
  uint64_t ran_ahead;            /* events made before their turn */
  uint64_t tail_seen;            /* `tail` when last read (it only grows) */
  int spin_score;                /* spinning for a turn near pays (>= 0) (wait_turn_slow) */
  unsigned shared_run;           /* waits in a row with the owner on our CPU (spread_check) */
  uint64_t spread_from;          /* spread_check: no move before this (ns) */
  uint64_t spread_pause;
  unsigned spin_probe;
  int parked;
  int checked;                   /* calls are checked against the trace: RP_HAKMEM, not driving a guessed call (guess_call) */
  uint64_t reader_seen;          /* `head` when the reader was last checked for sleep */
  _Alignas(64) _Atomic uint32_t sleeping;  /* futex: 1 while asleep */
  _Atomic int cpu;               /* where it last took the turn (wait_turn_slow); -1: not yet */
} rp_thread;

typedef struct rp_engine {
  _Alignas(64) _Atomic uint64_t turn;   /* written by the thread whose turn it is */
  _Atomic uint64_t done_seq;     /* seq of the last event replayed at its turn, +1 (0: none) */
  /* The same for events made ahead, the max over the threads that have
   * ended (thread_sums): apart from done_seq, which each event made at its
   * turn stores, so that one made later at a lower seq does not lower it. */
  _Atomic uint64_t ahead_seq;
  _Atomic uint64_t digest;       /* the threads' digests, added as each ends */
  _Atomic uint64_t ran_ahead;
  _Alignas(64) _Atomic uint64_t nread;  /* the reader's */
  /* The reader, at its bound, sleeps until the turn reaches this (then it
   * has a quarter of the bound of room), so a replay does not wake it per
   * step; UINT64_MAX while it is not waiting. */
  _Alignas(64) _Atomic uint64_t reader_wake;
  /* Replay threads that hold the turn and wait for the reader: the call
   * that makes their due event lies past the reader's bound, which it then
   * passes (up to OWN_CAP ahead) until they have it. */
  _Atomic int starved;
  uint64_t ahead;                /* the bound: MAX_AHEAD, or HAKMEM_REPLAY_AHEAD */
  /* Waiters yield (wait_turn_slow) only from yield_from on (CLOCK_MONOTONIC
   * ns): yields that lose the CPU to other load put it off, for
   * yield_pause ns. yield_debt: YIELD_LATE_COST per late yield, less one
   * per yield on time. */
  _Alignas(64) _Atomic uint64_t yield_from;
  _Atomic uint64_t yield_pause;
  _Atomic int64_t yield_debt;
  _Alignas(64) rp_options o;
  rp_result *res;
  hkt_reader *rd;                /* the chain's reader now (the reader thread moves it on) */
  rp_chain chain;                /* the trace, after its parents' if it is a forked child's */
  int in_parents;                /* RP_LENIENT, RP_FUNCS: the item being made is a parent's (not written) */
  uint64_t rseq_own;             /* the rseq of the trace's own first event (its parents' came before) */
  const hkt_header *hdr;
  _Atomic(rp_thread *) *owner;   /* rseq -> the thread that makes it (a ring) */
  /* rseq -> rseq + 1 once its event was made before its turn (a ring of
   * OWN_CAP, like owner; the value says which rseq, so no slot is ever
   * cleared). Only with ahead_ok. */
  _Atomic uint64_t *done;
  int ahead_ok;                  /* calls may run before their turn (engine.c, "Running ahead") */
  rp_thread **by_tid;
  rp_thread reader;              /* the reader's own wait slot */
  rp_thread *pool;
  rp_thread *exiting;            /* reader: threads told to exit, to be joined */
  pthread_mutex_t lock;          /* results */
  _Atomic int stop;
  _Atomic int reader_done;
  _Atomic uint64_t total;        /* rseq count, once the reader is done */
  _Atomic int running;           /* replay threads neither parked nor returned */
  uint64_t rec_lo, rec_span;
  int64_t delta;                 /* replay arena base - recorded arena base */
  hkt_writer *w;                 /* RP_LENIENT with record_to */
  int w_err;
  uint64_t t0_ns;
  uint64_t arm_seq;              /* RP_LENIENT: calls from this seq on arm the held injection */
} rp_engine;

extern rp_engine rp_e;

static inline void futex_wait(_Atomic uint32_t *a, uint32_t v, long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  syscall(SYS_futex, a, FUTEX_WAIT_PRIVATE, v, &ts, NULL, 0);
}

static inline void wake(rp_thread *t) {
  if (atomic_load(&t->sleeping) && atomic_exchange(&t->sleeping, 0))
    syscall(SYS_futex, &t->sleeping, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* A recorded address as it is in this replay: the allocator is
 * deterministic relative to its arena, so only the base moves. */
static inline uint64_t xl(uint64_t v) {
  uint64_t d = (uint64_t)rp_e.delta;
  if (likely(!d)) return v;   /* the recorded arena base: identical addresses */
  return v - rp_e.rec_lo < rp_e.rec_span ? v + d : v;
}

/* The recorded thread index of an item of t's queue. */
static inline uint32_t item_tid(const rp_thread *t, const rp_item *it) {
  return it->flags & IT_NOBODY ? HAK_NO_OWNER - 1 : t->tid;
}

/* rp_is_call, inlined for the per-event paths */
static inline int is_call(unsigned kind) { return kind >= HKT_EV_MALLOC && kind <= HKT_EV_FREE; }

/* engine.c */
void *rp_thread_main(void *arg);
/* feed.c */
void *rp_reader_main(void *arg);
void *rp_ring_map(size_t size);
/* drive.c */
uint64_t rp_call_hak(const rp_item *it);
uint64_t rp_call_libc(const rp_item *it);
void rp_track(const rp_item *e, uint32_t tid, uint64_t got_ptr);

#endif /* HAK_REPLAY_ENGINE_H */
