/* engine.c — one replay: a reader thread, one thread per recorded thread,
 * and a turnstile that releases events in recorded order.
 *
 * The reader decodes the trace in seq order and appends each event it
 * keeps to the queue of the thread that made it, starting that replay
 * thread on its first event. Each kept event gets a dense turnstile number
 * (rseq); `turn` is the rseq of the next event due. Markers, module loads
 * and the end event are nothing to re-drive and get none.
 *
 * Against hakmem (RP_HAKMEM) a replay thread re-drives the calls of its
 * queue through hak_*; the allocator reports every event it makes to our
 * recorder (alloc/hook.h): wait() blocks until this thread's next expected
 * event is due, emit() checks the emitted event against it and advances the
 * turnstile. So internal events (refills, SuperSlab register, remote pushes)
 * are not driven, they are re-made by the allocator and compared, in the
 * same order as recorded. A thread's exit is real: the thread returns and
 * the allocator's own thread-exit path runs.
 *
 * RP_LENIENT (minimize) and RP_FUNCS (another allocator) keep only calls
 * and thread exits; a thread holds the turn for a whole call, so calls run
 * one at a time, in recorded order, and addresses go through the map.
 *
 * Memory bound: the reader runs at most rp_e.ahead (MAX_AHEAD) events
 * ahead of the turn, so a thread's queue never holds more than that (each
 * queue is a lazily touched mapping of MAX_AHEAD items). Everything before
 * the reader's position is queued, so the owner of the turn always has its
 * event; but a call whose internal events begin more than the bound before
 * its call event (whose arguments drive it) needs events past the bound:
 * while the thread holding the turn waits for that call (item_wait, "starved")
 * the reader goes on past the bound (feed.c, wait_room). A watchdog
 * reports a replay that stops moving as stalled. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include "engine.h"

rp_map rp_blocks;
rp_engine rp_e;
static __thread rp_thread *me;
static __thread const rp_item *cur_call;

/* ---- waiting ---- */

/* A stopped replay leaves every thread where it is: the state there is
 * what gets reported. Parked threads may hold allocator locks; nothing
 * after this takes them. */
static void thread_sums(void);
static __attribute__((noreturn)) void park(void) {
  if (me && !me->parked) {
    me->parked = 1;
    thread_sums();
    atomic_fetch_sub(&rp_e.running, 1);
    wake(&rp_e.reader);
  }
  static _Atomic uint32_t never;
  for (;;) futex_wait(&never, 0, 1000);
}

/* The trace ends where the recorded process died (other threads were
 * inside calls), not at its own end event. */
static int trace_cut(void) { return !rp_e.res->complete || rp_e.res->end_kind == HKT_END_SIGNAL; }

/* A forked child's trace (chain.c): the thread's events end in a parent's
 * part. It vanished at the fork, maybe inside a call that had made some of
 * its events (a call of another thread than the forking one): cut there,
 * as a crash cuts a trace. */
static int cut_at_fork(const rp_thread *m) {
  uint64_t t = atomic_load_explicit(&m->tail, memory_order_acquire);
  return rp_e.chain.base && t && m->q[(t - 1) & QMASK].seq < rp_e.chain.base;
}

/* Events of this thread end here, and not at an exit: the replay thread
 * stops where the recording did. */
static int thread_cut(const rp_thread *m) { return trace_cut() || cut_at_fork(m); }

/* The reader sleeps only at its bound (MAX_AHEAD events ahead of the
 * turn), until the turn has made a quarter of the bound of room (it set
 * rp_e.reader_wake): it needs to see the turn move that far, not every
 * step of it. */
static inline void wake_reader_at(uint64_t turn) {
  if (unlikely(turn >= atomic_load_explicit(&rp_e.reader_wake, memory_order_relaxed))) wake(&rp_e.reader);
}

static void wake_reader(void) {
  me->reader_seen = atomic_load_explicit(&me->head, memory_order_relaxed);
  atomic_thread_fence(memory_order_seq_cst);   /* our turn store before its `reader_wake` */
  wake_reader_at(atomic_load_explicit(&rp_e.turn, memory_order_relaxed));
}

/* Before a wait: the reader may wait for the turns this thread handed on
 * by itself since it last looked (advance_from's fast path looks only
 * every 64th step; a hand-off looks each time). */
static void wake_reader_if_stepped(void) {
  if (atomic_load_explicit(&me->head, memory_order_relaxed) != me->reader_seen) wake_reader();
}

static inline rp_thread *owner_of(uint64_t rseq) {
  return atomic_load_explicit(&rp_e.owner[rseq & (OWN_CAP - 1)], memory_order_relaxed);
}

/* The thread of the run that follows the one starting at `t` (the thread
 * the turn goes to when t's owner is done), if within RUN_LOOK events.
 * Entries past the reader's position are stale: a wrong guess only costs
 * a needless wake-up. */
static rp_thread *next_run_owner(uint64_t t) {
  rp_thread *cur = owner_of(t);
  for (uint64_t i = t + 1; i <= t + RUN_LOOK; i++) {
    rp_thread *o = owner_of(i);
    if (o != cur) return o;
  }
  return NULL;
}

/* The turn has come to t, by our hand: wake its owner, and the owner of
 * the run after it (it then spins instead of sleeping, wait_turn_slow). */
static void landed(uint64_t t) {
  rp_thread *o = owner_of(t);
  if (o && o != me) wake(o);
  rp_thread *n = next_run_owner(t);
  if (n && n != me) wake(n);
  wake_reader_at(t);
}

/* ---- running ahead ----
 *
 * A call that touched only its thread's own cache when it was recorded (a
 * malloc that popped it, a free that pushed a block of a SuperSlab the
 * thread owns: no internal event of the call around its item, see
 * may_run_ahead) does not wait for its turn: nothing another thread does can change
 * what it does, nor can it change what another thread does (hook.h: the
 * allocator calls wait() before anything that orders shared state, and
 * then the thread waits for its turn as before). So only the wall-clock
 * interleaving changes, never a decision. The event made ahead is marked
 * done (rp_e.done); whoever brings the turn to it moves the turn on past
 * it. Two sides can race for that move, the thread that brought the turn
 * and the maker (who marks, then looks at the turn): each stores, then
 * loads the other's word (seq_cst both), so at least one of them sees
 * both, and a CAS from t to t + 1 lets only one move it.
 * HAKMEM_REPLAY_STRICT=1 turns this off (docs/replay.md). */

/* The turn is t (set by us, or by the CAS we won): move it past every
 * event made ahead, then wake the owner of the one it stops at. A lost
 * CAS means another thread moves it on from there. */
static void walk_done(uint64_t t) {
  while (atomic_load(&rp_e.done[t & (OWN_CAP - 1)]) == t + 1) {
    uint64_t x = t;
    if (!atomic_compare_exchange_strong(&rp_e.turn, &x, t + 1)) return;
    t++;
  }
  landed(t);
}

/* advance_from's out-of-line part: the next event is not one this
 * thread has seen in its queue. It may be one published since (then it
 * is still ours); otherwise the turn goes to another thread. */
static __attribute__((noinline)) void advance_to_other(uint64_t t) {
  uint64_t h = atomic_load_explicit(&me->head, memory_order_relaxed);
  if (h >= me->tail_seen) me->tail_seen = atomic_load_explicit(&me->tail, memory_order_acquire);
  if (h < me->tail_seen && me->q[h & QMASK].rseq == t) {
    atomic_store_explicit(&rp_e.turn, t, memory_order_release);
    if (unlikely(!(t & 63))) wake_reader();
    return;
  }
  atomic_store(&rp_e.turn, t);
  me->reader_seen = h;
  if (rp_e.ahead_ok) walk_done(t);
  else landed(t);
}

/* Hand the turn on to t: m held t - 1 and has consumed its item; h is its
 * new head. When the next event is this thread's own (already in its
 * queue, so nobody else waits for it), a release store is the whole
 * hand-off: no fence, no look at other threads' wait slots; the reader
 * is looked at every 64th turn (and before this thread waits). Otherwise
 * the store is ordered before reading the sleeper's slot (each waiter
 * sets its slot, then re-reads the turn) and the next owner is woken; so
 * is the owner of the run after it, so that by then it spins instead of
 * sleeping (wait_turn_slow): its wake-up, a futex call and a context
 * switch, is then paid while the new owner works, not in the hand-off. */
static inline void advance_from(rp_thread *m, uint64_t t, uint64_t h) {
  if (likely(h < m->tail_seen && m->q[h & QMASK].rseq == t)) {
    atomic_store_explicit(&rp_e.turn, t, memory_order_release);
    if (unlikely(!(t & 63))) wake_reader();
    return;
  }
  advance_to_other(t);
}

static inline void advance(void) {
  advance_from(me, atomic_load_explicit(&rp_e.turn, memory_order_relaxed) + 1,
               atomic_load_explicit(&me->head, memory_order_relaxed));
}

static void set_stop(void) {
  atomic_store(&rp_e.stop, 1);
  wake(&rp_e.reader);
}

static int traced(void) {
  char buf[4096];
  int fd = open("/proc/self/status", 0);
  if (fd < 0) return 0;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char *p = strstr(buf, "TracerPid:");
  return p && atoi(p + 10) != 0;
}

/* The owner of the turn is about to make event `it`: stop there if asked. */
static void check_stop_at(const rp_item *it) {
  if (it->seq < rp_e.o.stop_at) return;
  pthread_mutex_lock(&rp_e.lock);
  rp_e.res->stopped = 1;
  pthread_mutex_unlock(&rp_e.lock);
  set_stop();
  /* Under a debugger: this thread, just before the event, is the place. */
  if (traced()) raise(SIGTRAP);
  park();
}

/* Wait until `it` is due; park if the replay stopped meanwhile. Only the
 * thread of the next run (the one the turn goes to when its owner is done)
 * waits awake; the others sleep, so that waiters never outnumber the cores
 * (2 here: the owner and its successor) and take the CPU from the thread
 * whose turn it is. advance() wakes the owner of the next turn and the one
 * of the run after it, who then waits awake: its wake-up is paid while the
 * new owner works, not in the hand-off.
 *
 * Awake is first a short spin (SPIN_MAX: a run or two of a ping-pong of
 * threads, A B A B, which is what multi-threaded traces mostly are), then
 * sched_yield, then sleep. Yielding is what makes a hand-off cheap when
 * our own threads fill the cores (4 replay threads and the reader on 2
 * cores, or one other busy program): the owner's hand-off is a store, not
 * a futex wake, and the waiter gives its core to the owner or the reader
 * until then. But a yield may give the core to another program's thread
 * for a whole time slice (milliseconds): with many busy programs nearly
 * every yield does, and a replay that yields crawls (mixed_xthread -t 4
 * beside 6 busy loops: 0.01 M events/s). So a late yield (over
 * YIELD_LATE) is a debt of YIELD_LATE_COST, paid back by one per yield on
 * time; over YIELD_DEBT, waiters sleep instead of yielding for
 * YIELD_PAUSE, twice as long each time the debt comes back right after
 * (up to YIELD_PAUSE_MAX), then try again. Beside one busy program a few
 * yields in 10 000 are late, in short bursts, and yielding still pays;
 * beside 6, nearly all are late (docs/replay.md, "Throughput"). The
 * yielding of one wait is bounded too (YIELD_FOR). A score of recent
 * spins (up when the turn came while spinning, down when not) skips the
 * spin while it does not pay; every 32nd wait still spins, so a machine
 * that frees up is noticed. A waiter whose owner runs on another CPU
 * spins longer (SPIN_APART); one whose owner shares its CPU moves away
 * now and then (spread_check). */
#define SPIN_MAX        128u          /* pauses: about 1 us, a run or two of a ping-pong */
#define YIELD_FOR       200000u       /* ns of yielding before sleeping */
#define YIELD_LATE      50000u        /* ns: this yield lost the CPU for a time slice */
#define YIELD_LATE_COST 100
#define YIELD_DEBT      2000          /* 20 late yields, less what yields on time paid back */
#define YIELD_PAUSE     200000000ull  /* ns */
#define YIELD_PAUSE_MAX 3200000000ull

/* One sched_yield of a waiter that began yielding at *since (0: not yet);
 * 0 when it is to sleep instead. The shared fields are a heuristic:
 * threads race on them harmlessly. */
static int yield_once(uint64_t *since) {
  uint64_t t0 = hkt_mono_ns();
  if (!*since) {
    if (t0 < atomic_load_explicit(&rp_e.yield_from, memory_order_relaxed)) return 0;
    *since = t0;
  }
  if (t0 - *since > YIELD_FOR) return 0;
  uint64_t turn = atomic_load_explicit(&rp_e.turn, memory_order_relaxed);
  sched_yield();
  uint64_t t1 = hkt_mono_ns();
  /* Running ahead, a long yield in which the turn moved on at 0.5 M
   * events/s or more gave the core to our own threads' work: not late
   * (beside busy programs it moves far slower). */
  if (t1 - t0 <= YIELD_LATE ||
      (rp_e.ahead_ok && (atomic_load_explicit(&rp_e.turn, memory_order_relaxed) - turn) * 2000 >= t1 - t0)) {
    if (atomic_load_explicit(&rp_e.yield_debt, memory_order_relaxed) > 0)
      atomic_fetch_sub_explicit(&rp_e.yield_debt, 1, memory_order_relaxed);
    return 1;
  }
  if (atomic_fetch_add_explicit(&rp_e.yield_debt, YIELD_LATE_COST, memory_order_relaxed) + YIELD_LATE_COST <
      YIELD_DEBT)
    return 1;
  uint64_t from = atomic_load_explicit(&rp_e.yield_from, memory_order_relaxed);
  uint64_t pause = atomic_load_explicit(&rp_e.yield_pause, memory_order_relaxed);
  pause = from && t1 - from < pause ? (2 * pause < YIELD_PAUSE_MAX ? 2 * pause : YIELD_PAUSE_MAX) : YIELD_PAUSE;
  atomic_store_explicit(&rp_e.yield_pause, pause, memory_order_relaxed);
  atomic_store_explicit(&rp_e.yield_from, t1 + pause, memory_order_relaxed);
  atomic_store_explicit(&rp_e.yield_debt, 0, memory_order_relaxed);
  return 0;
}

static int next_in_line(uint64_t turn, uint64_t mine) {
  if (mine - turn > RUN_LOOK) return 0;
  rp_thread *cur = owner_of(turn);
  for (uint64_t i = turn + 1; i < mine; i++)
    if (owner_of(i) != cur) return 0;
  return 1;
}

#define SPIN_APART       2048u         /* pauses, about 15 us, while the owner runs on another CPU */
#define SPREAD_AFTER     64            /* hand-offs in a row with the owner on our CPU */
#define SPREAD_PAUSE     20000000ull   /* ns between moves, doubled when sharing comes back soon */
#define SPREAD_PAUSE_MAX 2000000000ull

/* A waiter next in line whose owner last took the turn on this CPU: the
 * pair shares one core and every hand-off is a yield and a context switch
 * (threads that never sleep are never moved by the kernel). After
 * SPREAD_AFTER such waits in a row, move to another allowed CPU: a hint,
 * the thread's mask is set to that CPU and restored at once, and the
 * kernel keeps it there until it balances. Then the owner of a ping-pong
 * runs on one core while its partner spins on the other (SPIN_APART),
 * and a hand-off is a store. At most one move per pause (per thread:
 * larson's pairs are new threads every few ms), the pause doubled while
 * sharing comes back within it (the kernel put the pair together again,
 * or the other cores are busy). The replay's order does not depend on
 * where threads run. */
static void spread_check(int shared) {
  if (!shared) { me->shared_run = 0; return; }
  if (++me->shared_run < SPREAD_AFTER) return;
  me->shared_run = 0;
  uint64_t now = hkt_mono_ns(), from = me->spread_from, pause = me->spread_pause;
  if (now < from) return;
  pause = !pause ? SPREAD_PAUSE : now - from < pause ? (2 * pause < SPREAD_PAUSE_MAX ? 2 * pause : SPREAD_PAUSE_MAX)
                                                     : SPREAD_PAUSE;
  me->spread_pause = pause;
  me->spread_from = now + pause;
  cpu_set_t all, one;
  if (sched_getaffinity(0, sizeof all, &all)) return;
  int n = CPU_COUNT(&all), cur = sched_getcpu();
  if (n < 2) return;
  for (int c = cur + 1;; c++) {
    if (c >= CPU_SETSIZE) c = 0;
    if (c != cur && CPU_ISSET(c, &all)) { CPU_ZERO(&one); CPU_SET(c, &one); break; }
  }
  if (!sched_setaffinity(0, sizeof one, &one)) sched_setaffinity(0, sizeof all, &all);
}

static __attribute__((noinline)) void wait_turn_slow(const rp_item *it) {
  wake_reader_if_stepped();   /* before waiting: the reader may wait for us */
  unsigned spin = 0, failed = 0;
  uint64_t yielding = 0;   /* yield_once: since when */
  int yields = 1;
  unsigned limit = me->spin_score >= 0 || (++me->spin_probe & 31) == 0 ? SPIN_MAX : 0;
  uint64_t looked = UINT64_MAX;   /* the turn next_in_line was last asked for */
  int line = 0;
  for (;;) {
    uint64_t t = atomic_load(&rp_e.turn);
    if (t == it->rseq || atomic_load_explicit(&rp_e.stop, memory_order_relaxed)) break;
    if (t != looked && rp_e.ahead_ok) {
      /* Running ahead: the turn moves on through other threads' runs and
       * past events made ahead, toward ours. While it moves, wait awake:
       * spin, then yield (to our other threads, when the cores are full). */
      looked = t;
      line = 1;
      spin = 0;
      yields = 1;
      yielding = 0;
      limit = hkt_mono_ns() < atomic_load_explicit(&rp_e.yield_from, memory_order_relaxed) ? SPIN_APART : SPIN_MAX;
    } else if (t != looked) {
      looked = t;
      line = next_in_line(t, it->rseq);
      /* The owner took its turn on this CPU: the pair shares one core
       * (spread_check); on another, it runs while we wait: spin. */
      rp_thread *o = line ? owner_of(t) : NULL;
      if (o && o != me) {
        int oc = atomic_load_explicit(&o->cpu, memory_order_relaxed), shared = oc == sched_getcpu();
        spread_check(shared);
        if (!shared && oc >= 0 && limit < SPIN_APART) limit = SPIN_APART;   /* it runs elsewhere: spin */
      }
    }
    if (line && spin < limit) { spin++; __builtin_ia32_pause(); continue; }
    if (line && spin == limit && limit) failed = 1;
    if (line && yields && (yields = yield_once(&yielding))) continue;
    atomic_store(&me->sleeping, 1);
    if (atomic_load(&rp_e.turn) == it->rseq || atomic_load(&rp_e.stop)) { atomic_store(&me->sleeping, 0); break; }
    futex_wait(&me->sleeping, 1, 20);
    spin = 0;   /* woken early (the run before ours began): wait awake again */
    yields = 1;
    yielding = 0;
    if (failed) limit = 0;
  }
  if (failed) { if (me->spin_score > -4) me->spin_score--; }
  else if (spin) me->spin_score = me->spin_score < 0 ? 0 : me->spin_score < 4 ? me->spin_score + 1 : 4;
  if (atomic_load(&rp_e.stop)) park();
  atomic_store_explicit(&me->cpu, sched_getcpu(), memory_order_relaxed);
  check_stop_at(it);
}

static inline void wait_turn(const rp_item *it) {
  if (likely(atomic_load_explicit(&rp_e.turn, memory_order_acquire) == it->rseq &&
             !atomic_load_explicit(&rp_e.stop, memory_order_relaxed) && it->seq < rp_e.o.stop_at))
    return;
  wait_turn_slow(it);
}

/* Whether this thread holds the turn (its head item is due) while it
 * looks past its head for the call that makes that event. */
static int holds_turn_beyond(uint64_t i) {
  uint64_t h = atomic_load_explicit(&me->head, memory_order_relaxed);
  return i > h && h < me->tail_seen && me->q[h & QMASK].rseq == atomic_load(&rp_e.turn);
}

static int have_item(uint64_t i) {
  return i < atomic_load_explicit(&me->tail, memory_order_acquire) || atomic_load(&rp_e.reader_done);
}

/* This thread's next unconsumed item, waiting for the reader; NULL when
 * the trace has no more for it. Spin briefly (the reader publishes every
 * BATCH events), then sleep; the reader wakes the threads it published
 * to. A thread that holds the turn and waits for its call counts as
 * starved: the reader then passes its bound (feed.c, wait_room). */
static __attribute__((noinline)) rp_item *item_wait(uint64_t i) {
  wake_reader_if_stepped();
  int starving = 0;
  for (unsigned spin = 0; !have_item(i) && !atomic_load(&rp_e.stop); spin++) {
    /* One thread waits for the reader: the reader is the bound, and this
     * thread has time to spare (it catches up): take the next frame's
     * decompression off the reader. With more threads running, the turn
     * owner has none, and the reader mostly waits at its bound. */
    if (atomic_load_explicit(&rp_e.running, memory_order_relaxed) == 1 &&
        _hkt_reader_help(__atomic_load_n(&rp_e.rd, __ATOMIC_ACQUIRE)))
      continue;
    if (!starving && holds_turn_beyond(i)) {
      starving = 1;
      atomic_fetch_add(&rp_e.starved, 1);
      wake(&rp_e.reader);
    }
    if (spin < 1024) { __builtin_ia32_pause(); continue; }
    if (spin < 1040) { sched_yield(); continue; }
    atomic_store(&me->sleeping, 1);
    if (have_item(i) || atomic_load(&rp_e.stop) || (!starving && holds_turn_beyond(i))) {
      atomic_store(&me->sleeping, 0);
      continue;
    }
    futex_wait(&me->sleeping, 1, 20);
  }
  if (starving) atomic_fetch_sub(&rp_e.starved, 1);
  if (atomic_load(&rp_e.stop)) park();
  me->tail_seen = atomic_load_explicit(&me->tail, memory_order_acquire);
  if (i < me->tail_seen) return &me->q[i & QMASK];
  return NULL;
}

static inline rp_item *item_of(rp_thread *m, uint64_t i) {
  if (likely(i < m->tail_seen)) return &m->q[i & QMASK];
  return item_wait(i);
}

static inline rp_item *item_at(uint64_t i) { return item_of(me, i); }

/* Items are written on the reader's core: each first look at one here is a
 * transfer between the cores. Fetching a few ahead (published ones only:
 * the reader may still be writing past `tail`) overlaps those transfers
 * instead of paying them one after the other. */
#define CONSUME_AHEAD 8

static inline uint64_t consume_of(rp_thread *m) {
  uint64_t h = atomic_load_explicit(&m->head, memory_order_relaxed) + 1;
  atomic_store_explicit(&m->head, h, memory_order_release);
  if (likely(h + CONSUME_AHEAD < m->tail_seen)) __builtin_prefetch(&m->q[(h + CONSUME_AHEAD) & QMASK]);
  return h;
}

static inline void consume(void) { consume_of(me); }

/* ---- results ---- */

static void to_event(hkt_event *ev, const rp_thread *t, const rp_item *it) {
  memset(ev, 0, sizeof *ev);
  ev->seq = it->seq; ev->tid = item_tid(t, it); ev->kind = it->kind; ev->fn = it->fn; ev->cls = it->cls;
  ev->ptr = it->ptr; ev->size = it->size; ev->aux = it->aux; ev->aux2 = it->aux2; ev->aux3 = it->aux3;
}

/* exp: an item of t's queue, or NULL */
static void diverge(const rp_thread *t, const rp_item *exp, const hkt_event *got) {
  pthread_mutex_lock(&rp_e.lock);
  rp_result *r = rp_e.res;
  if (!r->diverged && !r->stopped) {
    r->diverged = 1;
    if (exp) to_event(&r->div_expected, t, exp); else r->div_exp_none = 1;
    if (got) { r->div_got = *got; r->div_got.seq = exp ? exp->seq : r->last_seq + 1; }
    else r->div_got_none = 1;
  }
  pthread_mutex_unlock(&rp_e.lock);
  set_stop();
}

static void add_detection(uint64_t seq, const hkt_event *ev, uint64_t rec_ptr) {
  if (seq < rp_e.chain.base) return;   /* a parent's, before the fork: its own replay's */
  pthread_mutex_lock(&rp_e.lock);
  rp_result *r = rp_e.res;
  if (r->ndet < RP_MAX_DET)
    r->det[r->ndet++] = (rp_detection){.seq = seq, .ptr = rec_ptr, .kind = ev->fn, .tid = ev->tid};
  r->ndet_total++;
  pthread_mutex_unlock(&rp_e.lock);
}

/* ---- checking (RP_HAKMEM) ---- */

/* Which fields hold addresses, per kind (bit 0 ptr, bit 1 aux). */
static unsigned addr_fields(unsigned kind) {
  switch (kind) {
  case HKT_EV_REALLOC: case HKT_EV_REMOTE_PUSH: case HKT_EV_DETECTION: return 3;
  case HKT_EV_REMOTE_DRAIN: case HKT_EV_CACHE_REFILL: return 2;
  case HKT_EV_THREAD_START: case HKT_EV_THREAD_EXIT: case HKT_EV_CACHE_FLUSH: return 0;
  default: return 1;
  }
}

static int same(const rp_item *e, const hkt_event *g) {
  if (e->kind != g->kind || e->fn != g->fn || item_tid(me, e) != g->tid) return 0;
  /* A FREE's class is what its thread saw in the registry on entry, without
   * a lock: a free racing the unregistration of its SuperSlab (a stale
   * pointer) may see either. What the free then does is compared. */
  if (e->cls != g->cls && e->kind != HKT_EV_FREE) return 0;
  unsigned a = addr_fields(e->kind);
  if ((a & 1 ? xl(e->ptr) : e->ptr) != g->ptr) return 0;
  if (e->size != g->size || e->aux2 != g->aux2 || e->aux3 != g->aux3) return 0;
  if (e->kind == HKT_EV_THREAD_START || e->kind == HKT_EV_THREAD_EXIT) return 1; /* aux: OS tid */
  return (a & 2 ? xl(e->aux) : e->aux) == g->aux;
}

/* A digest of the emitted events, compared between runs: each event's
 * fields and seq mixed by independent multiplies, and summed. A sum does
 * not depend on which thread made an event first (running ahead changes
 * that, from run to run), while the seq in each term still ties every
 * event to its place. kind, fn, cls and thread come packed as emit_call's
 * meta word (HAK_CALL_META). Each thread sums its own (thread_sums). */
static inline void digest_of(rp_thread *t, uint64_t seq, uint64_t meta, uint64_t ptr, uint64_t size, uint64_t aux,
                             uint64_t aux2) {
  uint64_t m = (meta ^ ptr * 0x9e3779b97f4a7c15ull) * 0xbf58476d1ce4e5b9ull +
               (size ^ aux * 0xc2b2ae3d27d4eb4full) * 0x94d049bb133111ebull + (aux2 ^ seq) * 0xd6e8feb86659fd93ull;
  t->digest += (m ^ m >> 29) * 0x100000001b3ull;
}
static inline void digest(uint64_t seq, const hkt_event *g) {
  /* aux of a thread start or exit: the OS thread id, not the allocator's */
  int os_tid = g->kind == HKT_EV_THREAD_START || g->kind == HKT_EV_THREAD_EXIT;
  digest_of(me, seq, HAK_CALL_META(g->kind, g->fn, g->cls, g->tid), g->ptr, g->size, os_tid ? 0 : g->aux, g->aux2);
}

/* A replay thread ends (returns or parks): its sums go to the replay's. */
static void thread_sums(void) {
  atomic_fetch_add(&rp_e.digest, me->digest);
  atomic_fetch_add(&rp_e.ran_ahead, me->ran_ahead);
  me->digest = me->ran_ahead = 0;
  uint64_t d = atomic_load(&rp_e.ahead_seq);
  while (me->last_done > d && !atomic_compare_exchange_weak(&rp_e.ahead_seq, &d, me->last_done)) {}
}

/* same() for a malloc-family call given by its fields (emit_call). */
static inline int same_call(const rp_thread *m, const rp_item *e, unsigned kind, unsigned fn, uint32_t tid,
                            uint32_t cls, uint64_t ptr, uint64_t size, uint64_t aux, uint64_t aux2) {
  if (e->kind != kind || e->fn != fn || item_tid(m, e) != tid) return 0;
  if (e->cls != cls && kind != HKT_EV_FREE) return 0;   /* see same() */
  if (xl(e->ptr) != ptr || e->size != size || e->aux2 != aux2 || e->aux3) return 0;
  return (kind == HKT_EV_REALLOC ? xl(e->aux) : e->aux) == aux;
}

static void rec_wait(void *ctx) {
  if (!me || rp_e.o.mode != RP_HAKMEM) return;
  me->ahead = 0;   /* shared state next: in order */
  rp_item *e = item_at(atomic_load_explicit(&me->head, memory_order_relaxed));
  if (e) { wait_turn(e); return; }
  /* Past the thread's last recorded event in a trace cut by a crash: stop
   * here, before the allocator takes the lock it is about to take, not in
   * emit with that lock held (another thread may still need it). */
  if (thread_cut(me)) { rp_e.res->beyond_end = 1; park(); }
}

static void rec_emit(void *ctx, hkt_event *ev) {
  if (!me) return;
  if (rp_e.o.mode != RP_HAKMEM) {
    /* One call at a time holds the turn: the order of these is the order
     * of the calls, so they make a trace of their own. */
    if (ev->kind == HKT_EV_DETECTION && cur_call) add_detection(cur_call->seq, ev, cur_call->ptr);
    if (cur_call) ev->seq = cur_call->seq;
    if (rp_e.w && !rp_e.in_parents) {   /* a forked child's trace is written without its parents' part */
      struct timespec ts;
      clock_gettime(CLOCK_MONOTONIC, &ts);
      ev->time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec - rp_e.t0_ns;
      pthread_mutex_lock(&rp_e.lock);
      int e = hkt_writer_put(rp_e.w, ev);
      if (HKT_IS_ERR(e) && !rp_e.w_err) rp_e.w_err = e;
      pthread_mutex_unlock(&rp_e.lock);
    }
    return;
  }
  /* A guessed call's own event is not in the trace: the process died in it. */
  if (!me->checked && is_call(ev->kind)) return;
  me->ahead = 0;   /* not a plain call (or not the one expected): at its turn */
  rp_item *e = item_at(atomic_load_explicit(&me->head, memory_order_relaxed));
  if (!e) {
    /* Past the thread's last recorded event. In a trace cut by a crash
     * this is where the recording stopped: the replay is there too. A
     * trace that ends with a fatal signal is cut the same way: other
     * threads were inside calls when the recorder closed it. */
    if (thread_cut(me)) { rp_e.res->beyond_end = 1; park(); }
    diverge(me, NULL, ev);
    park();
  }
  wait_turn(e);
  if (!same(e, ev)) { diverge(me, e, ev); park(); }
  /* as a recorder does: the allocator's messages quote it (the trace's own) */
  ev->seq = e->seq >= rp_e.chain.base ? e->seq - rp_e.chain.base : e->seq;
  if (ev->kind == HKT_EV_DETECTION) add_detection(e->seq, ev, e->ptr);
  /* Live blocks are not tracked here (a map update per call would cost a
   * cache miss each): rp_blocks_rebuild() re-reads the trace when a report
   * needs them. */
  digest(e->seq, ev);
  atomic_store_explicit(&rp_e.done_seq, e->seq + 1, memory_order_relaxed);
  consume();
  advance();
}

/* A checked call is done: its item consumed, the turn handed on. */
static inline void call_done(rp_thread *m, const rp_item *e, uint64_t meta, uint64_t ptr, uint64_t size, uint64_t aux,
                             uint64_t aux2) {
  digest_of(m, e->seq, meta, ptr, size, aux, aux2);
  atomic_store_explicit(&rp_e.done_seq, e->seq + 1, memory_order_relaxed);
  uint64_t t = e->rseq + 1;
  advance_from(m, t, consume_of(m));
}

/* A checked call made before its turn: consumed and marked done. If the
 * turn came to it meanwhile, whoever brought it may have looked before
 * the mark: move it on ourselves (walk_done's CAS settles the race). */
static inline void ahead_done(rp_thread *m, const rp_item *e, uint64_t meta, uint64_t ptr, uint64_t size,
                              uint64_t aux, uint64_t aux2) {
  uint64_t r = e->rseq;
  digest_of(m, e->seq, meta, ptr, size, aux, aux2);
  m->last_done = e->seq + 1;
  m->ran_ahead++;
  consume_of(m);
  atomic_store(&rp_e.done[r & (OWN_CAP - 1)], r + 1);
  if (unlikely(atomic_load(&rp_e.turn) == r)) {
    uint64_t x = r;
    if (atomic_compare_exchange_strong(&rp_e.turn, &x, r + 1)) walk_done(r + 1);
  }
}

/* rec_emit_call when its item is not at hand or not due: wait for it;
 * anything but the plain case (another mode, a guessed call, past the
 * thread's last event, a divergence) goes through rec_emit with an event. */
static __attribute__((noinline)) void emit_call_slow(uint64_t meta, uint64_t ptr, uint64_t size, uint64_t aux,
                                                     uint64_t aux2, uint64_t caller) {
  unsigned kind = HAK_META_KIND(meta), fn = HAK_META_FN(meta);
  uint32_t tid = HAK_META_TID(meta), cls = HAK_META_CLS(meta);
  rp_item *e;
  rp_thread *m = me;
  if (m) m->ahead = 0;   /* not at hand, or not the call expected: at its turn */
  if (likely(m && m->checked) && (e = item_at(atomic_load_explicit(&m->head, memory_order_relaxed)))) {
    wait_turn(e);
    if (likely(same_call(m, e, kind, fn, tid, cls, ptr, size, aux, aux2))) {
      call_done(m, e, meta, ptr, size, aux, aux2);
      return;
    }
  }
  hkt_event ev = {.kind = (uint16_t)kind, .fn = (uint16_t)fn, .tid = tid, .cls = cls, .ptr = ptr, .size = size,
                  .aux = aux, .aux2 = aux2, .caller = caller};
  rec_emit(NULL, &ev);
}

/* hak_recorder.emit_call: a call checked against its item from the
 * fields, with no hkt_event built. The fast path is the item at hand
 * and due, and the same: everything else is emit_call_slow's. */
static void rec_emit_call(uint64_t meta, uint64_t ptr, uint64_t size, uint64_t aux, uint64_t aux2, uint64_t caller) {
  rp_thread *m = me;
  if (likely(m != NULL)) {
    uint64_t h = atomic_load_explicit(&m->head, memory_order_relaxed);
    const rp_item *e = &m->q[h & QMASK];
    unsigned kind = HAK_META_KIND(meta), fn = HAK_META_FN(meta);
    uint32_t tid = HAK_META_TID(meta), cls = HAK_META_CLS(meta);
    if (likely(h < m->tail_seen && m->checked && !atomic_load_explicit(&rp_e.stop, memory_order_relaxed) &&
               same_call(m, e, kind, fn, tid, cls, ptr, size, aux, aux2))) {
      if (likely(e->rseq == atomic_load_explicit(&rp_e.turn, memory_order_acquire) && e->seq < rp_e.o.stop_at)) {
        call_done(m, e, meta, ptr, size, aux, aux2);
        return;
      }
      if (m->ahead) {   /* drive_checked checked stop_at */
        ahead_done(m, e, meta, ptr, size, aux, aux2);
        return;
      }
    }
  }
  emit_call_slow(meta, ptr, size, aux, aux2, caller);
}

static const hak_recorder recorder = {.wait = rec_wait, .emit = rec_emit, .emit_call = rec_emit_call};

/* ---- replay threads ---- */

/* The next call or exit of this thread, from the driver's cursor. */
static inline rp_item *next_drive(rp_thread *m) {
  uint64_t d = m->drive, h = atomic_load_explicit(&m->head, memory_order_relaxed);
  if (d < h) d = h;
  for (;; d++) {
    rp_item *it = item_of(m, d);
    if (!it) return NULL;
    if (it->flags & (IT_DRIVE | IT_EXIT | IT_START)) { m->drive = d + 1; return it; }
  }
}

/* A trace cut by a crash can end inside a call: a thread that was in its
 * malloc when another thread aborted has the events that malloc made (its
 * THREAD_START, a SuperSlab register, a refill) and not the MALLOC, which is
 * written when the call returns. Nothing is left to drive them, and without
 * them every other thread would wait at their seq (a stall). Drive the call
 * they tell of: a malloc of the class of the first of them that has one
 * (the smallest size of that class, so a debug canary does not push it to
 * the next), or of a large block's size; its own MALLOC, after the cut, is
 * not checked. A guess that makes other events diverges, as any call. */
static void guess_call(rp_item *first) {
  rp_item g = {.kind = HKT_EV_MALLOC, .size = 1, .cls = HKT_NO_CLASS};
  for (uint64_t i = atomic_load(&me->head); i < atomic_load(&me->tail); i++) {
    const rp_item *it = &me->q[i & QMASK];
    if (it->cls < HAK_CLASSES) { g.size = it->cls ? _hak_cls_size[it->cls - 1] + 1 : 1; break; }
    if (it->kind == HKT_EV_LARGE_MAP) { g.size = it->size; break; }
  }
  wait_turn(first);
  me->checked = 0;   /* guessing: the call's own event is not checked */
  rp_call_hak(&g);
  me->checked = 1;
}

/* Whether the call `it`, at m's head h (it made no internal event before
 * its own when recorded), runs before its turn: a malloc (a malloc's
 * internal events come before its MALLOC: so this one was a cache pop),
 * or a free whose FREE is followed by the thread's next call or exit (a
 * free's come after its FREE, so this one was a push into the thread's
 * cache; one with a remote push also looked the block's SuperSlab up
 * before it, in shared state); not at its turn already, before any
 * --stop-at, not on a thread revived after its exit (the dead heap). */
static inline int may_run_ahead(const rp_thread *m, const rp_item *it, uint64_t h) {
  if (!rp_e.ahead_ok || m->revived || it->seq >= rp_e.o.stop_at) return 0;
  if (it->kind == HKT_EV_FREE) {
    if (h + 1 >= m->tail_seen || !(m->q[(h + 1) & QMASK].flags & (IT_DRIVE | IT_EXIT))) return 0;
  } else if (it->kind != HKT_EV_MALLOC) {
    return 0;
  }
  return atomic_load_explicit(&rp_e.turn, memory_order_acquire) != it->rseq;
}

/* A FORK: what the allocator's prepare handler does that others see (it
 * sets the thread up: a thread may fork before any call of its own). No
 * fork here, and no event to check: the recorder made that one. */
static void fork_here(rp_item *it) {
  _hak_thread_index();
  wait_turn(it);
  call_done(me, it, HAK_CALL_META(it->kind, it->fn, it->cls, item_tid(me, it)), 0, 0, 0, 0);
}

/* RP_HAKMEM: each call is driven once its first event (the call's own,
 * or the first internal event it makes) is due; the allocator's hooks
 * check what it makes (rec_wait, rec_emit, rec_emit_call). Returns at
 * the thread's recorded exit. */
static void drive_checked(rp_thread *m) {
  for (;;) {
    rp_item *it = next_drive(m);
    if (likely(it && !(it->flags & IT_EXIT))) {
      uint64_t h = atomic_load_explicit(&m->head, memory_order_relaxed);
      if (m->drive == h + 1 && may_run_ahead(m, it, h)) m->ahead = 1;
      else wait_turn(m->drive == h + 1 ? it : item_of(m, h));   /* the call's first event: often the call */
      /* the common calls straight to the allocator, the rest by rp_call_hak */
      if (it->kind == HKT_EV_MALLOC) hak_malloc(it->size);
      else if (it->kind == HKT_EV_FREE) hak_free((void *)(uintptr_t)xl(it->ptr));
      else if (it->kind == HKT_EV_FORK) fork_here(it);
      else rp_call_hak(it);
      m->ahead = 0;
      continue;
    }
    if (_hak_tls->state == HAK_HEAP_EMPTY) {
      /* A thread with no call to start it (minimize keeps such threads for
       * their index): it starts where it was recorded to. */
      rp_item *h = item_at(atomic_load_explicit(&m->head, memory_order_relaxed));
      if (h && h->kind == HKT_EV_THREAD_START) {
        wait_turn(h);
        _hak_thread_index();
        m->drive = 0;   /* look for `it` again: from the head */
        continue;
      }
    }
    if (!it) {
      rp_item *left = thread_cut(m) ? item_at(atomic_load(&m->head)) : NULL;
      if (left) guess_call(left);
      park();
    }
    /* Exit: what the allocator's thread-exit key destructor does, called
     * here so that this thread knows when its last event is done; its
     * THREAD_EXIT and flushes are checked by rec_emit like any other. */
    if (_hak_tls->state == HAK_HEAP_LIVE) _hak_heap_exit(_hak_tls);
    return;
  }
}

void *rp_thread_main(void *arg) {
  me = arg;
  me->checked = rp_e.o.mode == RP_HAKMEM;
  if (me->revived && rp_e.o.mode != RP_FUNCS) {   /* a late call after this thread's exit */
    _hak_tls = &_hak_heap_dead;
    _hak_tls_idx = me->tid;
  }
  if (rp_e.o.mode == RP_HAKMEM) {
    drive_checked(me);
    thread_sums();
    atomic_fetch_sub(&rp_e.running, 1);
    wake_reader();
    return NULL;
  }
  for (;;) {
    rp_item *it = next_drive(me);
    if (!it) park();
    /* RP_LENIENT, RP_FUNCS: hold the turn for the whole call. */
    wait_turn(it);
    rp_e.in_parents = it->seq < rp_e.chain.base;
    if (it->flags & IT_START) {   /* RP_LENIENT: the allocator registers the thread now */
      _hak_thread_index();
      consume();
      advance();
      continue;
    }
    cur_call = it;
    if (rp_e.o.shared_seq) *rp_e.o.shared_seq = it->seq >= rp_e.chain.base ? it->seq - rp_e.chain.base : UINT64_MAX;
    if (it->flags & IT_EXIT) {
      if (rp_e.o.mode == RP_LENIENT && _hak_tls->state == HAK_HEAP_LIVE) _hak_heap_exit(_hak_tls);
      consume();
      atomic_fetch_sub(&rp_e.running, 1);
      advance();
      wake_reader();
      return NULL;
    }
    if (it->seq >= rp_e.arm_seq) _hak_inject_arm();   /* a held fault fires from this call on */
    uint64_t r = rp_e.o.mode == RP_LENIENT ? rp_call_hak(it) : rp_call_libc(it);
    uint64_t after;
    if (rp_e.o.mode == RP_LENIENT && _hak_inject_kind && !rp_e.res->inj_fired && _hak_inject_fired_here(&after)) {
      rp_e.res->inj_fired = 1;   /* calls run one at a time: the first to see it fired made it fire */
      rp_e.res->inj_seq = it->seq;
      rp_e.res->inj_after = after;
      rp_e.res->inj_tid = _hak_tls_idx;
    }
    if (it->kind == HKT_EV_FREE) rp_map_kill(&rp_blocks, it->ptr);
    else if (it->kind == HKT_EV_REALLOC && !r && !it->size && it->aux) rp_map_kill(&rp_blocks, it->aux);
    else rp_track(it, me->tid, r);
    cur_call = NULL;
    atomic_store_explicit(&rp_e.done_seq, it->seq + 1, memory_order_relaxed);
    consume();
    advance();
  }
}

/* ---- the controller ---- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The recorded event that is due now and has not come (for a stall, or
 * when every thread is done and events are left). */
static void missing(uint64_t t, int stall) {
  rp_thread *o = owner_of(t);
  rp_item *exp = NULL;
  if (o)
    for (uint64_t i = atomic_load(&o->head); i < atomic_load(&o->tail); i++)
      if (o->q[i & QMASK].rseq == t) { exp = &o->q[i & QMASK]; break; }
  rp_e.res->stalled = stall;
  diverge(o, exp, NULL);
}

int rp_run(const rp_options *o, rp_result *res) {
  memset(res, 0, sizeof *res);
  memset(&rp_e, 0, sizeof rp_e);
  rp_e.o = *o;
  rp_e.res = res;
  rp_e.reader_wake = UINT64_MAX;
  rp_e.ahead = MAX_AHEAD;
  const char *ahead = getenv("HAKMEM_REPLAY_AHEAD");   /* docs/environment.md: for tests */
  if (ahead && *ahead) {
    char *end;
    unsigned long long a = strtoull(ahead, &end, 0);
    if (*end == 'K' || *end == 'k') { a <<= 10; end++; }   /* as the allocator's numbers */
    if (*ahead == '-' || *end || a < 1 || a > MAX_AHEAD)
      fprintf(stderr, "hakmem: HAKMEM_REPLAY_AHEAD=%s: not a number from 1 to %u; ignored\n", ahead, MAX_AHEAD);
    else rp_e.ahead = a;
  }
  pthread_mutex_init(&rp_e.lock, NULL);
  if (rp_chain_open(&rp_e.chain, o->path, res->read_msg, sizeof res->read_msg)) return HKT_ERR_IO;
  rp_e.rd = rp_e.chain.rd[0];
  rp_e.hdr = hkt_reader_header(rp_e.chain.rd[rp_e.chain.n - 1]);
  for (unsigned i = 0; i < rp_e.chain.n; i++) _hkt_reader_async(rp_e.chain.rd[i]);   /* an error leaves it as it was */
  /* A forked child's trace: its own seqs come after its parents' (chain.c) */
  res->seq_base = rp_e.chain.base;
  if (o->stop_at != UINT64_MAX) rp_e.o.stop_at = o->stop_at + rp_e.chain.base;
  res->rec_base = rp_e.hdr->arena_base;
  rp_e.arm_seq = UINT64_MAX;
  const char *at = rp_e.hdr->config ? strstr(rp_e.hdr->config, RP_INJECT_AT) : NULL;
  if (o->mode == RP_LENIENT && at) {
    rp_e.arm_seq = strtoull(at + strlen(RP_INJECT_AT), NULL, 10);
    _hak_inject_hold();
  }
  if (o->mode != RP_FUNCS) {
    _hak_init();
    res->rep_base = (uint64_t)(uintptr_t)_hak_arena.ss_base;
    rp_e.rec_lo = res->rec_base;
    rp_e.rec_span = res->rec_base ? 2 * _hak_cfg.arena_reserve : 0;
    rp_e.delta = (int64_t)(res->rep_base - res->rec_base);
  }
  size_t own = OWN_CAP * sizeof(rp_thread *), tids = MAX_TIDS * sizeof(rp_thread *);
  rp_e.owner = rp_ring_map(own);
  rp_e.by_tid = mmap(NULL, tids, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (rp_e.owner == MAP_FAILED || rp_e.by_tid == MAP_FAILED || rp_map_init(&rp_blocks)) {
    snprintf(res->read_msg, sizeof res->read_msg, "out of memory");
    return HKT_ERR_NOMEM;
  }
  if (o->mode == RP_LENIENT && o->record_to) {
    hkt_header h = *rp_e.hdr;
    h.arena_base = res->rep_base;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    rp_e.t0_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    int we = hkt_writer_open(&rp_e.w, o->record_to, &h);
    if (HKT_IS_ERR(we)) {
      snprintf(res->read_msg, sizeof res->read_msg, "%s: cannot write: %s", o->record_to, hkt_strerror(we));
      return we;
    }
  }
  if (o->mode != RP_FUNCS) _hak_recorder_attach(&recorder);
  /* Running ahead (above): checked replays where the allocator's miss
   * paths make the plain calls' events (_hak_instr 2: no debug level, whose
   * checks and quarantine are not all the thread's own), no fault
   * injection (its counts are the process's), unless asked not to. */
  const char *strict = getenv("HAKMEM_REPLAY_STRICT");
  if (o->mode == RP_HAKMEM && _hak_instr == 2 && !_hak_inject_kind && !(strict && *strict && strcmp(strict, "0"))) {
    rp_e.done = rp_ring_map(OWN_CAP * sizeof *rp_e.done);
    rp_e.ahead_ok = rp_e.done != MAP_FAILED;
  }

  double t0 = now_s(), last_move = t0, last_print = t0;
  uint64_t last_turn = 0;
  pthread_t rt;
  if (pthread_create(&rt, NULL, rp_reader_main, NULL)) {
    snprintf(res->read_msg, sizeof res->read_msg, "cannot start the reader thread");
    return HKT_ERR_NOMEM;
  }
  int printed = 0;
  long nap = 50000;   /* short replays end in well under a millisecond: poll fast, then every 2 ms */
  for (;;) {
    struct timespec ts = {0, nap};
    nanosleep(&ts, NULL);
    if (nap < 2000000) nap *= 2;
    uint64_t t = atomic_load(&rp_e.turn);
    double now = now_s();
    int done = atomic_load(&rp_e.reader_done) && (t == atomic_load(&rp_e.total) || atomic_load(&rp_e.running) == 0);
    if (atomic_load(&rp_e.stop) || done) break;
    if (t != last_turn) { last_turn = t; last_move = now; }
    else if (now - last_move > o->stall_s) { missing(t, 1); break; }
    if (o->progress && now - t0 > 1 && now - last_print > 0.25) {
      fprintf(stderr, "\rhakmem replay: %llu events read, %llu replayed (%.1f M events/s)   ",
              (unsigned long long)atomic_load(&rp_e.nread), (unsigned long long)t,
              atomic_load(&rp_e.nread) / (now - t0) / 1e6);
      last_print = now;
      printed = 1;
    }
  }
  res->seconds = now_s() - t0;
  /* Every thread is done and recorded events are left: in a whole trace
   * that is a divergence (they never came); in a cut one, the call that
   * made them is not in the trace (it was cut inside it). */
  uint64_t tt = atomic_load(&rp_e.turn), total = atomic_load(&rp_e.total);
  if (!atomic_load(&rp_e.stop) && atomic_load(&rp_e.reader_done) && tt < total) {
    if (res->complete && res->end_kind != HKT_END_SIGNAL) missing(tt, 0);
    else res->unreached = total - tt;
  }
  /* Let threads still inside a call reach their park (bounded). */
  for (int i = 0; i < 500 && atomic_load(&rp_e.running) > 0; i++) {
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
  }
  if (printed) fputs("\r\033[K", stderr);
  if (atomic_load(&rp_e.reader_done)) pthread_join(rt, NULL);
  res->events = atomic_load(&rp_e.nread);
  res->replayed = atomic_load(&rp_e.turn);
  res->digest = atomic_load(&rp_e.digest);
  res->ran_ahead = atomic_load(&rp_e.ran_ahead);
  res->ahead = rp_e.ahead_ok;
  if (rp_e.w) {   /* the run ended as a clean exit of the replay; threads are parked */
    pthread_mutex_lock(&rp_e.lock);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    hkt_event end = {.kind = HKT_EV_END, .fn = HKT_END_EXIT, .cls = HKT_NO_CLASS,
                     .time_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec - rp_e.t0_ns};
    int we = hkt_writer_put(rp_e.w, &end);
    if (!HKT_IS_ERR(we)) we = hkt_writer_close(rp_e.w, 1);
    rp_e.w = NULL;
    pthread_mutex_unlock(&rp_e.lock);
    if (HKT_IS_ERR(we) || rp_e.w_err) {
      snprintf(res->read_msg, sizeof res->read_msg, "%s: cannot write: %s", o->record_to,
               hkt_strerror(HKT_IS_ERR(we) ? we : rp_e.w_err));
      return HKT_IS_ERR(we) ? we : rp_e.w_err;
    }
  }
  return 0;
}

/* ---- a forked child's seqs (chain.c) ---- */

/* A seq of the chain as the trace's own; in a parent's part, that trace's
 * own seq and *parent its path. */
uint64_t rp_own_seq(uint64_t v, const char **parent) {
  const rp_chain *c = &rp_e.chain;
  *parent = NULL;
  if (v == UINT64_MAX || v >= c->base) return v == UINT64_MAX ? v : v - c->base;
  for (unsigned i = c->n - 1; i-- > 0;)
    if (v >= c->base_of[i]) { *parent = c->path[i]; return v - c->base_of[i]; }
  return v;
}

void rp_result_rebase(rp_result *r) {
  uint64_t b = rp_e.chain.base;
  if (r->rebased || !b) { r->rebased = 1; return; }
  r->rebased = 1;
  const char *p1, *p2;
  r->events = r->events > b ? r->events - b : 0;
  r->replayed = r->replayed > rp_e.rseq_own ? r->replayed - rp_e.rseq_own : 0;   /* turns are items */
  r->last_seq = rp_own_seq(r->last_seq, &p1);
  for (uint32_t i = 0; i < r->ndet; i++) r->det[i].seq -= b;   /* add_detection keeps the trace's own only */
  if (r->diverged) {
    r->div_expected.seq = rp_own_seq(r->div_expected.seq, &p1);
    r->div_got.seq = rp_own_seq(r->div_got.seq, &p2);
    if (p1 || p2) snprintf(r->div_parent, sizeof r->div_parent, "%s", p1 ? p1 : p2);
  }
}

int64_t rp_last_done_own(void) {
  int64_t d = rp_last_done();
  return d < 0 || (uint64_t)d < rp_e.chain.base ? -1 : d - (int64_t)rp_e.chain.base;
}

/* For a crash report: the seq of the last event replayed, -1 if none. */
int64_t rp_last_done(void) {
  uint64_t d = atomic_load(&rp_e.done_seq), a = atomic_load(&rp_e.ahead_seq);
  return (int64_t)(d > a ? d : a) - 1;
}

/* ---- shared helpers ---- */

int rp_is_call(unsigned kind) { return is_call(kind); }
