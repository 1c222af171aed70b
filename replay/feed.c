/* feed.c — the reader thread: decodes the trace in order and feeds each
 * replay thread its events, starting (and, after their exit, reclaiming)
 * replay threads as the trace names them. See engine.c for the design and
 * the memory bound. */
#include <pthread.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include "engine.h"

/* ---- the reader ---- */

/* Stands in rp_e.by_tid for a thread whose exit has completed. */
static rp_thread gone = {.exiting = 1};

/* Reader only: take back the slots of threads that have finished exiting. */
static void reclaim(void) {
  for (rp_thread **pp = &rp_e.exiting; *pp;) {
    rp_thread *t = *pp;
    if (pthread_tryjoin_np(t->pt, NULL) == 0) {
      *pp = t->next_exiting;
      if (rp_e.by_tid[t->tid] == t) rp_e.by_tid[t->tid] = &gone;
      t->next = rp_e.pool;
      rp_e.pool = t;
    } else {
      pp = &t->next_exiting;
    }
  }
}

/* A ring of `size` bytes (a multiple of HUGE_SZ) at a HUGE_SZ boundary,
 * touched lazily. Its first huge page's worth is left to small pages (a
 * short replay, a minimize candidate, touches a few of them); once the
 * reader is past it, the rest is advised to transparent huge pages
 * (ring_huge): one fault per 2 MiB instead of 512, and fewer TLB misses on
 * both sides of a queue. */
void *rp_ring_map(size_t size) {
  char *p = mmap(NULL, size + HUGE_SZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return p;
  char *a = (char *)(((uintptr_t)p + HUGE_SZ - 1) & ~(uintptr_t)(HUGE_SZ - 1));
  if (a > p) munmap(p, (size_t)(a - p));
  munmap(a + size, (size_t)(p + HUGE_SZ - a));
  return a;
}

static void ring_huge(void *ring, size_t size) {
  madvise((char *)ring + HUGE_SZ, size - HUGE_SZ, MADV_HUGEPAGE);   /* advice only: failing is fine */
}

static rp_thread *thread_new(uint32_t tid, int revived) {
  reclaim();
  rp_thread *t = rp_e.pool;
  rp_item *q = t ? t->q : NULL;
  int huge = t ? t->huge : 0;
  if (t) {
    rp_e.pool = t->next;
  } else {
    t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    q = rp_ring_map((size_t)MAX_AHEAD * sizeof(rp_item));
    if (t == MAP_FAILED || q == MAP_FAILED) return NULL;
  }
  memset(t, 0, sizeof *t);
  t->q = q;
  t->qlim = MAX_AHEAD;
  t->huge = huge;
  t->tid = tid;
  t->revived = revived;
  t->cpu = -1;
  return t;
}

static int thread_start(rp_thread *t) {
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setstacksize(&a, 256u << 10);
  atomic_fetch_add(&rp_e.running, 1);
  int e = pthread_create(&t->pt, &a, rp_thread_main, t);
  pthread_attr_destroy(&a);
  if (e) { atomic_fetch_sub(&rp_e.running, 1); return -1; }
  return 0;
}

/* The replay thread that takes `ev` (flags: what it is to that thread):
 * the tid's thread, made on its first event, or made again for a call
 * after the thread's exit (a late free from another destructor). */
static rp_thread *route(const hkt_event *ev, unsigned flags) {
  rp_thread *t = rp_e.by_tid[ev->tid];
  int late = t && t->exiting && (t == &gone || rp_e.o.mode != RP_HAKMEM || (flags & IT_DRIVE));
  if (t && !late) return t;
  if (!t) rp_e.res->threads++;
  rp_thread *n = thread_new(ev->tid, late);
  if (!n || thread_start(n)) return NULL;
  rp_e.by_tid[ev->tid] = n;
  return n;
}

static void publish(rp_thread **dirty) {
  for (rp_thread *t = *dirty, *n; t; t = n) {
    n = t->next;
    if (unlikely(!t->huge && t->ltail >= HUGE_SZ / sizeof(rp_item))) {
      t->huge = 1;
      ring_huge(t->q, (size_t)MAX_AHEAD * sizeof(rp_item));
    }
    t->dirty = 0;
    t->next = NULL;
    atomic_store_explicit(&t->tail, t->ltail, memory_order_release);
    wake(t);
  }
  *dirty = NULL;
}

/* Kinds a replay does not make again: they record the program (a marker,
 * a module load, the end), not the allocator. */
static int not_replayed(unsigned k) {
  return k == HKT_EV_NONE || k >= HKT_EV__COUNT || k == HKT_EV_MARK || k == HKT_EV_MODULE_LOAD ||
         k == HKT_EV_END;
}

/* What the event is to a replay thread; 0 = not queued. */
static unsigned classify(const hkt_event *ev, rp_thread *t) {
  unsigned k = ev->kind;
  if (ev->tid == HKT_TID_RECORDER || not_replayed(k)) return 0;
  unsigned f = 0;
  if (k == HKT_EV_FORK) {
    /* Driven against hakmem (what the prepare handler does: engine.c,
     * fork_here); nothing elsewhere: a replay does not fork. */
    return rp_e.o.mode == RP_HAKMEM ? IT_KEEP | IT_DRIVE : 0;
  }
  if (k == HKT_EV_DETECTION && rp_det_from_realloc(ev, t ? t->last_kind : 0, t ? t->last_ptr : 0)) {
    f = IT_DRIVE | IT_RINVALID;
  } else if (is_call(k)) {
    /* realloc(p, 0) frees p itself: its FREE follows and is not a call. */
    int rfree = t && t->rfree && k == HKT_EV_FREE;
    if (!rfree) f = IT_DRIVE;
  } else if (k == HKT_EV_THREAD_EXIT) {
    f = IT_EXIT;
  } else if (k == HKT_EV_THREAD_START && rp_e.o.mode == RP_LENIENT) {
    /* Lenient (minimize): a thread starts in the allocator at its recorded
     * start, so that thread indices are the recording's even where a
     * candidate dropped calls (an injection names its thread by index). */
    f = IT_START;
  }
  if (!f && rp_e.o.mode != RP_HAKMEM) return 0;
  return f | IT_KEEP;
}

/* realloc of a pointer that is not a block makes a detection and no
 * REALLOC event: a free-kind detection that does not follow a free (or a
 * realloc) of the same pointer is such a call, and is re-driven as
 * realloc(ptr, 1). Should the allocator record that call, before its
 * detection, this finds nothing to infer. */
int rp_det_from_realloc(const hkt_event *det, unsigned last_kind, uint64_t last_ptr) {
  if (det->kind != HKT_EV_DETECTION) return 0;
  if (det->fn != HKT_DET_INVALID_FREE && det->fn != HKT_DET_INTERIOR_FREE && det->fn != HKT_DET_STALE_FREE &&
      det->fn != HKT_DET_DOUBLE_FREE)
    return 0;
  /* last_ptr: the pointer the last call gave back (a free's, a realloc's old one) */
  return !((last_kind == HKT_EV_FREE || last_kind == HKT_EV_REALLOC) && last_ptr == det->ptr);
}

/* Whether the reader may queue event `rseq` into t's queue: the turn has
 * reached `want`, or a thread is starved (engine.c, item_wait). */
static int room(uint64_t rseq, rp_thread *t, uint64_t want) {
  uint64_t turn = atomic_load(&rp_e.turn);
  if (t->ltail - atomic_load_explicit(&t->head, memory_order_acquire) >= MAX_AHEAD) return 0;   /* its queue is full */
  return turn >= want || (atomic_load(&rp_e.starved) && rseq - turn < OWN_CAP - 2 * RUN_LOOK);
}

/* At the bound: sleep until the turn has made a quarter of the bound of
 * room (replay threads wake the reader when it passes rp_e.reader_wake).
 * No spinning: that room takes many events to come, and the cores are the
 * replay threads'. But while a thread that holds the turn waits for the
 * call that makes its due event (a call spanning more than the bound: a
 * thread that waited inside malloc while others ran), the reader goes on
 * past the bound, up to OWN_CAP ahead and a queue's size: memory grows
 * with that span only. Returns the turn it saw last. */
static uint64_t wait_room(uint64_t rseq, rp_thread *t) {
  uint64_t keep = rp_e.ahead - rp_e.ahead / 4;   /* events ahead of the turn to wait for */
  uint64_t want = rseq > keep ? rseq - keep : 0;
  rp_thread *self = &rp_e.reader;
  atomic_store(&rp_e.reader_wake, want);
  while (!atomic_load(&rp_e.stop) && !room(rseq, t, want)) {
    atomic_store(&self->sleeping, 1);
    if (atomic_load(&rp_e.stop) || room(rseq, t, want)) { atomic_store(&self->sleeping, 0); break; }
    futex_wait(&self->sleeping, 1, 20);
  }
  atomic_store(&rp_e.reader_wake, UINT64_MAX);
  t->qlim = atomic_load(&t->head) + MAX_AHEAD;
  return atomic_load(&rp_e.turn);
}

#define PREFETCH 16   /* items: 1 KiB ahead of the reader's stores */
#define RD_BATCH 64   /* events decoded at a time: 7 KiB, beside the queue lines in L1 */

/* What the reader's fast path does with a kind (rp_reader_main): most
 * events are calls and internal events of a running thread. */
enum { PATH_SLOW, PATH_CALL, PATH_KEEP };
static uint8_t kind_path[HKT_EV__COUNT];

static void kind_paths(void) {
  for (unsigned k = HKT_EV_MALLOC; k < HKT_EV__COUNT; k++) {
    if (is_call(k)) kind_path[k] = PATH_CALL;
    else if (k == HKT_EV_THREAD_START || k == HKT_EV_THREAD_EXIT || k == HKT_EV_DETECTION || k == HKT_EV_FORK ||
             not_replayed(k) || rp_e.o.mode != RP_HAKMEM)
      kind_path[k] = PATH_SLOW;
    else kind_path[k] = PATH_KEEP;
  }
}

/* A call's traces in its thread's bookkeeping (classify, rp_det_from_realloc). */
static inline void note_call(rp_thread *t, const hkt_event *ev) {
  t->rfree = ev->kind == HKT_EV_REALLOC && !ev->ptr && !ev->size && ev->aux && !ev->aux2;
  t->last_kind = ev->kind;
  t->last_ptr = ev->kind == HKT_EV_REALLOC ? ev->aux : ev->ptr;
}

/* The reader's slow path: every event that is not a call or an internal
 * event of a running thread. Its thread (NULL: not queued) and flags;
 * an error stops the reader (*err). */
static rp_thread *route_slow(const hkt_event *ev, rp_thread **last_caller, unsigned *flagsp, int *err) {
  if (ev->kind == HKT_EV_END) { rp_e.res->complete = 1; rp_e.res->end_kind = ev->fn; rp_e.res->end_aux = ev->aux; }
  /* A thread whose heap is gone emits some events (a late free's remote
   * push) with no thread index: they belong to the latest call's thread. */
  if (ev->tid == HAK_NO_OWNER - 1 && *last_caller) {
    *flagsp = IT_KEEP | IT_NOBODY;
    return rp_e.o.mode == RP_HAKMEM ? *last_caller : NULL;
  }
  if (ev->tid >= MAX_TIDS && ev->tid != HKT_TID_RECORDER) {
    *err = HKT_ERR_CORRUPT;
    snprintf(rp_e.res->read_msg, sizeof rp_e.res->read_msg, "%s: seq %llu: thread index %u is out of range",
             rp_e.o.path, (unsigned long long)ev->seq, ev->tid);
    return NULL;
  }
  rp_thread *cur = ev->tid < MAX_TIDS ? rp_e.by_tid[ev->tid] : NULL;
  unsigned flags = classify(ev, cur);
  if (cur && is_call(ev->kind)) note_call(cur, ev);
  if (cur && (flags & IT_RINVALID)) { cur->last_kind = HKT_EV_REALLOC; cur->last_ptr = 0; }
  if (!flags) return NULL;
  rp_thread *t = route(ev, flags);
  if (!t) {
    *err = HKT_ERR_NOMEM;
    snprintf(rp_e.res->read_msg, sizeof rp_e.res->read_msg, "%s: seq %llu: cannot start a replay thread",
             rp_e.o.path, (unsigned long long)ev->seq);
    return NULL;
  }
  if (t != cur && cur) { t->rfree = cur->rfree; t->last_kind = cur->last_kind; t->last_ptr = cur->last_ptr; }
  if (flags & IT_DRIVE) *last_caller = t;
  *flagsp = flags;
  return t;
}

/* Queue ev as item `rseq` of t. rp_item mirrors hkt_event's layout from
 * ptr to aux3 and from kind to cls, so the copy is two blocks; rseq and
 * flags go in one store (bit-field stores would read the queue's line
 * first: a miss, its consumer has it). The line a few items on is fetched
 * for writing now, so the store to it does not wait (a line last used a
 * queue's length ago, or read since by the consumer: 2-4% of the reader's
 * time). */
#define SAME_OFFSETS(a, b) (offsetof(rp_item, b) - offsetof(rp_item, a) == offsetof(hkt_event, b) - offsetof(hkt_event, a))
_Static_assert(SAME_OFFSETS(ptr, size) && SAME_OFFSETS(ptr, aux) && SAME_OFFSETS(ptr, aux2) && SAME_OFFSETS(ptr, aux3),
               "ptr to aux3: one block in both");
_Static_assert(SAME_OFFSETS(kind, fn) && SAME_OFFSETS(kind, cls) && sizeof(((rp_item *)0)->cls) == 4,
               "kind, fn, cls: one block in both");
static inline void put_item(rp_thread *t, const hkt_event *ev, uint64_t rseq, unsigned flags) {
  __builtin_prefetch(&t->q[(t->ltail + PREFETCH) & QMASK], 1);
  rp_item *it = &t->q[t->ltail & QMASK];
  memcpy(&it->ptr, &ev->ptr, 5 * sizeof(uint64_t));
  it->seq = ev->seq;
  it->rseq_flags = rseq | (uint64_t)(flags & 0xff) << 48;
  memcpy(&it->kind, &ev->kind, 8);
  t->ltail++;
}

/* Flags of an event that a run (put_run) may take, by kind; 0: not. A
 * kind is 16 bits: every value has an entry (the page of the kinds is the
 * only one touched). */
static uint8_t run_flags[1u << 16];

static void run_kinds(void) {
  for (unsigned k = 0; k < HKT_EV__COUNT; k++) {
    /* realloc is left to the general path: it may make its FREE no call */
    run_flags[k] = kind_path[k] == PATH_CALL && k != HKT_EV_REALLOC ? IT_KEEP | IT_DRIVE
                 : kind_path[k] == PATH_KEEP                        ? IT_KEEP
                                                                    : 0;
  }
}

/* The reader's fast path: a run of events of one running thread (all of
 * them, in a one-thread trace) queued with no look-up per event. evs[0]
 * is the thread's; n: how many the run may take at most (below the
 * bound, within the thread's queue and the batch). A call here is not a
 * realloc and t->rfree is clear, so every call is driven and leaves rfree
 * clear. Returns how many it took (0: evs[0] is not for a run). */
static inline unsigned put_run(rp_thread *t, const hkt_event *evs, unsigned n, uint64_t rseq,
                               _Atomic(rp_thread *) *owner, int *called) {
  /* neither ring wraps inside the run: items and owners go by pointer */
  uint64_t lt = t->ltail;
  if (n > MAX_AHEAD - (lt & QMASK)) n = MAX_AHEAD - (lt & QMASK);
  if (n > OWN_CAP - (rseq & (OWN_CAP - 1))) n = OWN_CAP - (rseq & (OWN_CAP - 1));
  rp_item *it = &t->q[lt & QMASK];
  _Atomic(rp_thread *) *ow = &owner[rseq & (OWN_CAP - 1)];
  const hkt_event *ev = evs, *call = NULL;
  uint32_t tid = ev->tid;
  unsigned i;
  for (i = 0; i < n; i++, ev++, it++) {
    unsigned f = run_flags[ev->kind];
    if (ev->tid != tid || !f) break;
    __builtin_prefetch(it + PREFETCH, 1);   /* past the ring's end: harmless, a prefetch never faults */
    memcpy(&it->ptr, &ev->ptr, 5 * sizeof(uint64_t));
    it->seq = ev->seq;
    it->rseq_flags = (rseq + i) | (uint64_t)f << 48;
    memcpy(&it->kind, &ev->kind, 8);
    atomic_store_explicit(&ow[i], t, memory_order_relaxed);
    if (f & IT_DRIVE) call = ev;
  }
  t->ltail = lt + i;
  if (call) { t->last_kind = call->kind; t->last_ptr = call->ptr; *called = 1; }   /* note_call of the last */
  return i;
}

void *rp_reader_main(void *arg) {
  hkt_event evs[RD_BATCH];
  rp_thread *dirty = NULL;
  unsigned nb = 0;
  uint64_t rseq = 0, nread = 0, ahead = rp_e.ahead;
  uint64_t rseq_lim = ahead;   /* the turn when last read + the bound */
  uint64_t owner_huge_at = HUGE_SZ / sizeof *rp_e.owner;   /* ring_huge the owner ring when past it */
  uint64_t last_seq = 0;   /* rp_e.res->last_seq, stored once per batch */
  rp_thread *last_caller = NULL;
  rp_thread **by_tid = rp_e.by_tid;
  _Atomic(rp_thread *) *owner = rp_e.owner;
  int r, k = 0, err = 0;
  kind_paths();
  run_kinds();
  /* Events by the batch, decoded straight into an array of this thread's;
   * their time and caller are never needed here (a reader already read
   * from is left as it is: skip only saves work). */
  for (unsigned i = 0; i < rp_e.chain.n; i++) hkt_reader_skip(rp_e.chain.rd[i], HKT_SKIP_TIME | HKT_SKIP_CALLER);
  while ((r = rp_chain_batch(&rp_e.chain, evs, RD_BATCH)) > 0) {
    __atomic_store_n(&rp_e.rd, rp_e.chain.rd[rp_e.chain.cur], __ATOMIC_RELEASE);   /* for item_wait's help */
    if (rp_e.chain.base && !rp_e.rseq_own && evs[0].seq >= rp_e.chain.base) rp_e.rseq_own = rseq;   /* a batch is one segment's */
    for (k = 0; k < r; k++) {
      const hkt_event *ev = &evs[k];
      uint32_t tid = ev->tid;
      rp_thread *t = tid < MAX_TIDS ? by_tid[tid] : NULL;
      /* A run of this thread's events, as far as the bound (the turn seen,
       * the thread's head seen) and the batch let it go without a look. */
      if (t && !t->exiting && !t->rfree) {
        uint64_t n = (unsigned)r - (unsigned)k, room = BATCH - nb;
        if (n > room) n = room;
        room = rseq < rseq_lim ? rseq_lim - rseq : 0;
        if (n > room) n = room;
        room = t->ltail < t->qlim ? t->qlim - t->ltail : 0;
        if (n > room) n = room;
        int called = 0;
        unsigned took = put_run(t, ev, (unsigned)n, rseq, owner, &called);
        if (took) {
          if (called) last_caller = t;
          if (!t->dirty) { t->dirty = 1; t->next = dirty; dirty = t; }
          rseq += took;
          nb += took;
          k += (int)took - 1;
          ev = &evs[k];
          goto counted;
        }
      }
      /* Every other event, one by one: the first of a thread, its start or
       * exit, a realloc, a detection, a marker, a wait at the bound. */
      unsigned kind = ev->kind, flags = IT_KEEP;
      unsigned path = kind < HKT_EV__COUNT ? kind_path[kind] : PATH_SLOW;
      if (path != PATH_SLOW && t && !t->exiting) {
        if (path == PATH_CALL) {
          /* realloc(p, 0) frees p itself: its FREE follows and is not a call. */
          if (!(kind == HKT_EV_FREE && t->rfree)) { flags |= IT_DRIVE; last_caller = t; }
          note_call(t, ev);
        }
      } else {
        t = route_slow(ev, &last_caller, &flags, &err);
        if (err) { r = err; goto stopped; }
        if (!t) continue;
      }
      /* The turn and the thread's head are only read when the bound might
       * be reached: they are the replay threads' hottest lines, and reading
       * them per event would move them between cores per event. */
      if (unlikely(rseq >= rseq_lim || t->ltail >= t->qlim)) {
        rseq_lim = atomic_load(&rp_e.turn) + ahead;
        t->qlim = atomic_load_explicit(&t->head, memory_order_acquire) + MAX_AHEAD;
        if (rseq >= rseq_lim || t->ltail >= t->qlim) {
          publish(&dirty);
          nb = 0;
          rseq_lim = wait_room(rseq, t) + ahead;
          if (atomic_load(&rp_e.stop)) goto stopped;
        }
      }
      put_item(t, ev, rseq, flags);
      atomic_store_explicit(&owner[rseq & (OWN_CAP - 1)], t, memory_order_relaxed);
      if (unlikely(flags & IT_EXIT)) { t->exiting = 1; t->next_exiting = rp_e.exiting; rp_e.exiting = t; }
      if (!t->dirty) { t->dirty = 1; t->next = dirty; dirty = t; }
      rseq++;
      nb++;
    counted:
      if (nb == BATCH) {
        if (unlikely(rseq >= owner_huge_at)) {
          ring_huge(rp_e.owner, OWN_CAP * sizeof *rp_e.owner);
          owner_huge_at = UINT64_MAX;
        }
        publish(&dirty);
        nb = 0;
        rp_e.res->last_seq = ev->seq;
        atomic_store_explicit(&rp_e.nread, nread + (unsigned)k + 1, memory_order_relaxed);
        if (atomic_load_explicit(&rp_e.stop, memory_order_relaxed)) { r = 0; goto stopped; }
      }
    }
    nread += (unsigned)r;
    last_seq = evs[r - 1].seq;
  }
  goto done;
stopped:   /* inside a batch, at evs[k] (read: counted) */
  nread += (unsigned)k + 1;
  last_seq = evs[k].seq;
done:
  if (nread) rp_e.res->last_seq = last_seq;
  atomic_store_explicit(&rp_e.nread, nread, memory_order_relaxed);
  publish(&dirty);
  if (HKT_IS_ERR(r) && !rp_e.res->read_err) {
    rp_e.res->read_err = r;
    if (!rp_e.res->read_msg[0]) snprintf(rp_e.res->read_msg, sizeof rp_e.res->read_msg, "%s", rp_e.chain.msg);
  }
  atomic_store(&rp_e.total, rseq);
  atomic_store(&rp_e.reader_done, 1);
  /* Every thread waiting for more items: those with an event in the ring
   * (the written part only: a short replay touches no more of it); any
   * other wakes by its futex's timeout. */
  rp_thread *prev = NULL;
  for (uint64_t i = rseq > OWN_CAP ? rseq - OWN_CAP : 0; i < rseq; i++) {
    rp_thread *o = atomic_load_explicit(&rp_e.owner[i & (OWN_CAP - 1)], memory_order_relaxed);
    if (o && o != prev) wake(o);
    prev = o;
  }
  return NULL;
}

