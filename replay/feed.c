/* feed.c — the reader thread: decodes the trace in order and feeds each
 * replay thread its events, starting (and, after their exit, reclaiming)
 * replay threads as the trace names them. See engine.c for the design and
 * the memory bound. */
#include <pthread.h>
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

static rp_thread *thread_new(uint32_t tid, int revived) {
  reclaim();
  rp_thread *t = rp_e.pool;
  rp_item *q = t ? t->q : NULL;
  if (t) {
    rp_e.pool = t->next;
  } else {
    t = mmap(NULL, sizeof *t, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    q = mmap(NULL, (size_t)MAX_AHEAD * sizeof(rp_item), PROT_READ | PROT_WRITE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (t == MAP_FAILED || q == MAP_FAILED) return NULL;
  }
  memset(t, 0, sizeof *t);
  t->q = q;
  t->tid = tid;
  t->revived = revived;
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
    t->dirty = 0;
    t->next = NULL;
    atomic_store_explicit(&t->tail, t->ltail, memory_order_release);
    wake(t);
  }
  *dirty = NULL;
}

/* What the event is to a replay thread; 0 = not queued. */
static unsigned classify(const hkt_event *ev, rp_thread *t) {
  unsigned k = ev->kind;
  if (ev->tid == HKT_TID_RECORDER || k == HKT_EV_NONE || k >= HKT_EV__COUNT || k == HKT_EV_MARK ||
      k == HKT_EV_MODULE_LOAD || k == HKT_EV_END)
    return 0;
  unsigned f = 0;
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

void *rp_reader_main(void *arg) {
  const hkt_event *evs;
  rp_thread *dirty = NULL;
  unsigned nb = 0;
  uint64_t rseq = 0, nread = 0, turn_seen = 0;
  rp_thread *last_caller = NULL;
  int r;
  /* Events by the batch, straight from the reader's decoded array. */
  while ((r = hkt_reader_batch(rp_e.rd, &evs)) > 0) for (int k = 0, nev = r; k < nev; k++) {
    const hkt_event *ev = &evs[k];
    nread++;
    rp_e.res->last_seq = ev->seq;
    if (ev->kind == HKT_EV_END) { rp_e.res->complete = 1; rp_e.res->end_kind = ev->fn; rp_e.res->end_aux = ev->aux; }
    /* A thread whose heap is gone emits some events (a late free's remote
     * push) with no thread index: they belong to the latest call's thread. */
    rp_thread *nobody = NULL;
    if (ev->tid == HAK_NO_OWNER - 1 && last_caller) { nobody = last_caller; goto queue_it; }
    if (ev->tid >= MAX_TIDS && ev->tid != HKT_TID_RECORDER) {
      r = HKT_ERR_CORRUPT;
      snprintf(rp_e.res->read_msg, sizeof rp_e.res->read_msg, "%s: seq %llu: thread index %u is out of range",
               rp_e.o.path, (unsigned long long)ev->seq, ev->tid);
      goto done;
    }
    rp_thread *cur = ev->tid < MAX_TIDS ? rp_e.by_tid[ev->tid] : NULL;
    unsigned flags = classify(ev, cur);
    if (cur && is_call(ev->kind)) {
      cur->rfree = ev->kind == HKT_EV_REALLOC && !ev->ptr && !ev->size && ev->aux && !ev->aux2;
      cur->last_kind = ev->kind;
      cur->last_ptr = ev->kind == HKT_EV_REALLOC ? ev->aux : ev->ptr;
    }
    if (cur && (flags & IT_RINVALID)) { cur->last_kind = HKT_EV_REALLOC; cur->last_ptr = 0; }
    if (!flags) continue;
    rp_thread *t = route(ev, flags);
    if (!t) {
      r = HKT_ERR_NOMEM;
      snprintf(rp_e.res->read_msg, sizeof rp_e.res->read_msg, "%s: seq %llu: cannot start a replay thread",
               rp_e.o.path, (unsigned long long)ev->seq);
      goto done;
    }
    if (t != cur && cur) { t->rfree = cur->rfree; t->last_kind = cur->last_kind; t->last_ptr = cur->last_ptr; }
    if (flags & IT_DRIVE) last_caller = t;
  queue_it:
    if (nobody) { t = nobody; flags = IT_KEEP | IT_NOBODY; if (rp_e.o.mode != RP_HAKMEM) continue; }
    /* The turn and the thread's head are only read when the bound might
     * be reached: they are the replay threads' hottest lines, and reading
     * them per event would move them between cores per event. */
    if ((rseq - turn_seen >= MAX_AHEAD && rseq - (turn_seen = atomic_load(&rp_e.turn)) >= MAX_AHEAD) ||
        (t->ltail - t->head_seen >= MAX_AHEAD &&
         t->ltail - (t->head_seen = atomic_load_explicit(&t->head, memory_order_acquire)) >= MAX_AHEAD)) {
      publish(&dirty);
      nb = 0;
      rp_thread *self = &rp_e.reader;
      WAIT_UNTIL(self, rseq - atomic_load(&rp_e.turn) < MAX_AHEAD &&
                       t->ltail - atomic_load_explicit(&t->head, memory_order_acquire) < MAX_AHEAD);
      if (atomic_load(&rp_e.stop)) goto done;
    }
    /* rseq and flags in one store: bit-field stores would read the
     * queue's line first (a miss: its consumer has it). */
    t->q[t->ltail & QMASK] = (rp_item){.seq = ev->seq, .ptr = ev->ptr, .size = ev->size, .aux = ev->aux,
                                       .aux2 = ev->aux2, .aux3 = ev->aux3,
                                       .rseq_flags = rseq | (uint64_t)(flags & 0xff) << 48,
                                       .cls = ev->cls, .kind = ev->kind, .fn = ev->fn};
    atomic_store_explicit(&rp_e.owner[rseq & (OWN_CAP - 1)], t, memory_order_relaxed);
    t->ltail++;
    if (flags & IT_EXIT) { t->exiting = 1; t->next_exiting = rp_e.exiting; rp_e.exiting = t; }
    if (!t->dirty) { t->dirty = 1; t->next = dirty; dirty = t; }
    rseq++;
    if (++nb == BATCH) {
      publish(&dirty);
      nb = 0;
      atomic_store_explicit(&rp_e.nread, nread, memory_order_relaxed);
      if (atomic_load_explicit(&rp_e.stop, memory_order_relaxed)) goto done;
    }
  }
done:
  atomic_store_explicit(&rp_e.nread, nread, memory_order_relaxed);
  publish(&dirty);
  if (HKT_IS_ERR(r) && !rp_e.res->read_err) {
    rp_e.res->read_err = r;
    if (!rp_e.res->read_msg[0]) snprintf(rp_e.res->read_msg, sizeof rp_e.res->read_msg, "%s", hkt_reader_errmsg(rp_e.rd));
  }
  atomic_store(&rp_e.total, rseq);
  atomic_store(&rp_e.reader_done, 1);
  for (uint32_t i = 0; i < OWN_CAP; i++) {   /* every thread waiting for more items */
    rp_thread *o = atomic_load_explicit(&rp_e.owner[i], memory_order_relaxed);
    if (o) wake(o);
  }
  return NULL;
}

