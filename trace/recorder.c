/* recorder.c — the in-process recorder: HAKMEM_TRACE=FILE.
 *
 * Hot path (emit): a seq from one global atomic counter, a TSC stamp, one
 * 64-byte record into this thread's chunk of the spool (a MAP_SHARED file,
 * spool.h), published with a release store. No lock, no syscall. A writer
 * thread merges the chunks into seq order and writes the trace (drain.c):
 * compression never runs on a recorded thread.
 *
 * Life cycle:
 *  - start: _hak_recorder_autostart, inside the first malloc: claim the
 *    trace file, create the spool, attach. Raw syscalls only.
 *  - constructor: the parts that need libc: configuration into the spool
 *    header, exit and crash handlers, fork handler, the writer thread.
 *  - end: exit (on_exit gives the status), a crash signal, or exec. The end
 *    takes a seq like an event; the writer drains everything before it,
 *    writes END and the end frame, and removes the spool. After a SIGKILL
 *    the spool stays: `hakmem record` or `hakmem recover` finish it.
 *  - fork: the child records into its own file (naming below) with its own
 *    spool and writer thread.
 *
 * Trace file names: the first process writes FILE. Any other process (a
 * forked child, or an exec'd image, which finds FILE taken) writes
 * FILE.<pid>.hkt.zst (".hkt.zst" stays last if FILE ends with it), then
 * FILE.<pid>.<n>.hkt.zst if that is taken too. An exec'd image finishes
 * the trace of the image it replaced (END exec) from that one's spool.
 * HAKMEM_TRACE_ROOT=<pid> names the first process ("hakmem record" sets it;
 * otherwise the first process sets it for its descendants). */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <cpuid.h>
#include <x86intrin.h>
#include "hakmem.h"
#include "hook.h"
#include "config.h"
#include "recorder.h"
#include "solo_seq.h"
#include "zstd_api.h"

#define MAX_PRED 8

static struct {
  hkt_spool sp;
  _Atomic int active;         /* attached and recording */
  _Atomic int ending;         /* an end was requested */
  _Atomic int halt;           /* a crash ends the process: other threads stop in emit */
  int started;                /* autostart ran in this process */
  int trace_fd;
  pid_t pid;
  unsigned backtrace;
  _Atomic uint32_t hint;      /* where chunk claims start looking */
  _Atomic int writer_up;
  pthread_t writer;
  pid_t writer_tid;
  pthread_key_t key;
  int key_ok;
  _Atomic int dropped_reported;
  _Atomic uint64_t stalled_at;  /* writer progress when it was found stalled (0: not) */
  char trace_path[1024];
  char trace_abs[1024];       /* the same, absolute: what a forked child's header names */
  char spool_path[1040];      /* FILE.spool: the spool, or a link to it */
  char spool_real[1040];      /* where the spool is (tmpfs when there is one) */
  int npred;
  char pred[MAX_PRED][1040];  /* spools of images this one replaced (exec) */
  struct sigaction old[32];
  hkt_modlist mods;           /* modules at start (constructor), then as the writer saw them */
  uint64_t adds;
  _Atomic uint64_t adds_seen; /* the writer's last look at the loader's count of loads */
  _Atomic uint32_t mod_req, mod_done;   /* exit asks the writer for one more look (last_module_check) */
} R = { .trace_fd = -1 };

static __thread struct rec_tls {
  hkt_rec *cur, *end;         /* the next record of this thread's chunk, and the chunk's end */
  hkt_chunk_hdr *ch;
  uint32_t tid;
  int exempt;                 /* the crashing thread and the writer: never halted */
  uint64_t stamp;             /* the last TSC read, reused by the next few events */
  uint8_t seq_mode;           /* HKT_SEQ_NONE until this thread's first seq (solo_seq.h) */
} T __attribute__((tls_model("initial-exec")));

/* The global seq, without a lock while one thread alone takes seqs. */
static hkt_solo SQ;

/* Reading the TSC costs 10-25 ns in a VM, as much as the rest of the hot
 * path; times are kept at 256 ns resolution anyway. So a thread reads it
 * for the record in every STAMP_EVERY-th slot of its chunk (about every
 * STAMP_EVERY events: the position says when, no counter to store), and
 * always for the rare events (thread start/exit, SuperSlab events,
 * detections, module loads, marks, the end). Not for the frequent internal
 * ones (STAMP_AS_CALLS): a cross-thread free makes a remote push each, and
 * a fresh stamp for each cost the freeing thread 10-25 ns and the trace
 * about 0.2 bytes per event of time deltas. */
#define STAMP_EVERY 8
#define STAMP_AS_CALLS (1u << HKT_EV_REMOTE_PUSH | 1u << HKT_EV_REMOTE_DRAIN | 1u << HKT_EV_CACHE_REFILL | \
                        1u << HKT_EV_CACHE_FLUSH)

/* How many records ahead the hot path prefetches its next line. */
#ifndef PREFETCH_AHEAD
#define PREFETCH_AHEAD 8
#endif

static const int crash_signals[] = { SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL };

/* ---- small helpers that do not allocate ---- */

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char buf[1300];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = (int)sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t k = write(2, buf, (size_t)n);
  (void)k;
}

static int have_invariant_tsc(void) {
  unsigned a, b, c, d;
  if (!__get_cpuid(0x80000007, &a, &b, &c, &d)) return 0;
  return (d >> 8) & 1;
}

static uint64_t env_u64(const char *name, uint64_t def, uint64_t max) {
  const char *s = getenv(name);
  if (!s || !*s) return def;
  char *end;
  unsigned long long v = strtoull(s, &end, 10);
  if (*end || v > max) {
    say("hakmem: %s=%s: not a number up to %llu; using %llu", name, s, (unsigned long long)max,
        (unsigned long long)def);
    return def;
  }
  return v;
}

static void futex_wake(_Atomic uint32_t *w) {
  atomic_fetch_add_explicit(w, 1, memory_order_release);
  syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0);
}

static void futex_wait(_Atomic uint32_t *w, uint32_t seen, long ns) {
  struct timespec ts = { ns / 1000000000, ns % 1000000000 };
  syscall(SYS_futex, w, FUTEX_WAIT, seen, &ts, NULL, 0);
}

/* FILE with ".<pid>" (and ".<n>") inserted before a final ".hkt.zst". */
static int name_for(char *out, size_t cap, const char *base, int pid, int n) {
  size_t bl = strlen(base), sl = strlen(".hkt.zst");
  int has = bl > sl && !strcmp(base + bl - sl, ".hkt.zst");
  int stem = (int)(has ? bl - sl : bl);
  int k = n ? snprintf(out, cap, "%.*s.%d.%d%s", stem, base, pid, n, has ? ".hkt.zst" : "")
            : snprintf(out, cap, "%.*s.%d%s", stem, base, pid, has ? ".hkt.zst" : "");
  return k > 0 && (size_t)k < cap - 8 ? 0 : -1;
}

static void note_pred(const char *trace) {
  if (R.npred >= MAX_PRED) return;
  char sp[1040];
  snprintf(sp, sizeof sp, "%s.spool", trace);
  if (access(sp, F_OK)) return;
  memcpy(R.pred[R.npred++], sp, sizeof sp);
}

/* R.trace_abs from R.trace_path (getcwd with a buffer: no allocation). */
static void note_abs_path(void) {
  char cwd[1024];
  size_t n = strlen(R.trace_path), c;
  if (R.trace_path[0] != '/' && getcwd(cwd, sizeof cwd) && (c = strlen(cwd)) + 1 + n < sizeof R.trace_abs) {
    memcpy(R.trace_abs, cwd, c);
    R.trace_abs[c] = '/';
    memcpy(R.trace_abs + c + 1, R.trace_path, n + 1);
  } else {
    memcpy(R.trace_abs, R.trace_path, n + 1);
  }
}

/* Claim the trace file name (see the top of this file). */
static int claim_trace(const char *base, int forked) {
  char path[1024];
  const char *root = getenv("HAKMEM_TRACE_ROOT");
  if (root && !*root) root = NULL;
  int fd = -1;
  if (!forked && !root) {
    fd = open(base, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) snprintf(R.trace_path, sizeof R.trace_path, "%s", base);
    else say("hakmem: HAKMEM_TRACE=%s: %s; not recording", base, strerror(errno));
    return fd;
  }
  if (!forked && atoi(root) == R.pid) {
    fd = open(base, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) { snprintf(R.trace_path, sizeof R.trace_path, "%s", base); return fd; }
    if (errno != EEXIST) { say("hakmem: HAKMEM_TRACE=%s: %s; not recording", base, strerror(errno)); return -1; }
    note_pred(base);
  }
  for (int n = 0; n < 1000; n++) {
    if (name_for(path, sizeof path, base, R.pid, n)) break;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) { snprintf(R.trace_path, sizeof R.trace_path, "%s", path); return fd; }
    if (errno != EEXIST) break;
    if (!forked) note_pred(path);
  }
  say("hakmem: HAKMEM_TRACE=%s: cannot create a trace file for pid %d: %s; not recording", base, (int)R.pid,
      strerror(errno));
  return -1;
}

static void read_cmdline(char *dst, size_t cap) {
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, dst, cap - 1);
  close(fd);
  if (n <= 0) return;
  while (n > 0 && dst[n - 1] == 0) n--;
  for (ssize_t i = 0; i < n; i++) if (!dst[i]) dst[i] = ' ';
  dst[n] = 0;
}

/* ---- the hot path ---- */

static void tls_dtor(void *arg);

/* A crash is ending the process (on_crash) and this thread's event took a
 * seq after the end's: it stops here, before publishing, so no call returns
 * after the trace's end. An event whose seq came before the end's goes on
 * (the writer waits for it); the thread stops at its next one. Signals stay
 * blocked: the crashing thread takes them, and the process dies with it. */
static __attribute__((noreturn, noinline, cold)) void halt_here(void) {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  static uint32_t never;
  for (;;) syscall(SYS_futex, &never, FUTEX_WAIT, 0, NULL, NULL, 0);
}

static __attribute__((noinline, cold)) void halt_if_after_end(uint64_t seq) {
  hkt_spool_hdr *h = R.sp.h;
  uint64_t end;
  while ((end = atomic_load_explicit(&h->end_seq, memory_order_acquire)) == UINT64_MAX) sched_yield();
  if (seq < end) return;
  halt_here();
}

static inline __attribute__((always_inline)) int rec_halted(const struct rec_tls *t) {
  return hkt_unlikely(atomic_load_explicit(&R.halt, memory_order_relaxed)) && !t->exempt;
}

/* Recording has stopped: 1. A thread halted by a crash that ends the
 * process (the trace is finished) stops here instead: its event is after
 * the trace's end, and its call must not return unrecorded. */
static int recording_over(const struct rec_tls *t) {
  if (atomic_load_explicit(&R.active, memory_order_acquire)) return 0;
  if (rec_halted(t)) halt_here();
  return 1;
}

/* Seal this thread's chunk and claim a free one. Returns 0 when recording
 * cannot go on for this event. */
static __attribute__((noinline)) int refill(struct rec_tls *t, unsigned need, uint32_t tid) {
  hkt_spool *s = &R.sp;
  if (recording_over(t) || need > HKT_CHUNK_RECS) return 0;
  if (t->ch) atomic_store_explicit(&t->ch->state, HKT_CHUNK_SEALED, memory_order_release);
  t->ch = NULL;
  t->cur = t->end = NULL;
  uint32_t n = s->h->nchunks;
  uint64_t t0 = 0, progress = 0;
  uint64_t stalled = atomic_load_explicit(&R.stalled_at, memory_order_relaxed);
  for (;;) {
    uint32_t start = atomic_fetch_add_explicit(&R.hint, 1, memory_order_relaxed);
    for (uint32_t k = 0; k < n; k++) {
      uint32_t i = (start + k) % n;
      hkt_chunk_hdr *c = &s->dir[i];
      uint32_t st = HKT_CHUNK_FREE;
      if (atomic_load_explicit(&c->state, memory_order_relaxed) == HKT_CHUNK_FREE &&
          atomic_compare_exchange_strong_explicit(&c->state, &st, HKT_CHUNK_OWNED, memory_order_acquire,
                                                  memory_order_relaxed)) {
        c->os_tid = (uint32_t)syscall(SYS_gettid);
        /* every seq from now on is above this: older records do not count */
        atomic_store_explicit(&c->claim_seq, atomic_load(&s->h->next_seq), memory_order_release);
        t->ch = c;
        t->cur = hkt_spool_chunk(s, i);
        t->end = t->cur + HKT_CHUNK_RECS;
        t->tid = tid;
        if (R.key_ok) pthread_setspecific(R.key, (void *)1);
        return 1;
      }
    }
    /* The spool is full: the writer is behind. Wait for it, as long as it
     * makes progress; a writer that stopped (or never started) must not
     * hang the program: then events are dropped, and that is said once. */
    futex_wake(&s->h->wake);
    uint64_t now = hkt_mono_ns(), p = atomic_load(&s->h->drained_seq) + atomic_load(&s->h->written_events) + 1;
    if (stalled == p) return 0;   /* still stalled: drop at once */
    if (!t0 || p != progress) { t0 = now; progress = p; }
    if (now - t0 > (atomic_load(&R.writer_up) ? 10000000000ull : 2000000000ull)) {
      atomic_store(&R.stalled_at, p);
      break;
    }
    struct timespec ts = { 0, 200000 };
    nanosleep(&ts, NULL);
    if (recording_over(t)) return 0;
  }
  if (!atomic_exchange(&R.dropped_reported, 1))
    say("hakmem: trace %s: the spool is full and its writer makes no progress; events are being dropped",
        R.trace_path);
  return 0;
}

/* This thread's first seq. */
static __attribute__((noinline, cold)) void seq_join(struct rec_tls *t) { hkt_solo_join(&SQ, &t->seq_mode); }

/* Room for n records in this thread's chunk (a new chunk if need be).
 * 0: the event is dropped (counted). */
static inline __attribute__((always_inline)) int rec_room(struct rec_tls *t, unsigned n, uint32_t tid) {
  if (hkt_likely((uintptr_t)t->end - (uintptr_t)t->cur >= n * sizeof(hkt_rec)) || refill(t, n, tid)) return 1;
  atomic_fetch_add_explicit(&R.sp.h->dropped, 1, memory_order_relaxed);
  return 0;
}

/* The TSC for the record at r, read again in every STAMP_EVERY-th slot. */
static inline __attribute__((always_inline)) uint64_t rec_stamp(struct rec_tls *t, const hkt_rec *r, int always) {
  if (hkt_unlikely(((uintptr_t)r & (STAMP_EVERY * sizeof(hkt_rec) - 1)) == 0 || always)) t->stamp = __rdtsc();
  return t->stamp;
}

/* The line a little ahead, owned (prefetchw): its miss overlaps this
 * event, and the writer's copy from the chunk's last use goes early. */
static inline __attribute__((always_inline)) void rec_prefetch(const hkt_rec *r) {
  __asm__ volatile("prefetchw %0" : : "m"(*(const char *)(r + PREFETCH_AHEAD)));
}

/* The event's seq (seq_join has run for this thread). */
static inline __attribute__((always_inline)) uint64_t rec_seq(struct rec_tls *t) {
  return hkt_solo_seq(&SQ, &t->seq_mode, &R.sp.h->next_seq);
}

/* seq1 last (release): the writer takes the record from here on. */
static inline __attribute__((always_inline)) void rec_publish(struct rec_tls *t, hkt_rec *r, uint64_t seq,
                                                               unsigned n) {
  __atomic_store_n(&r->seq1, seq + 1, __ATOMIC_RELEASE);
  t->cur = r + n;
}

static void rec_emit(void *ctx, hkt_event *ev) {
  (void)ctx;
  struct rec_tls *t = &T;
  size_t sl, bl;
  if (hkt_unlikely(R.backtrace) && ev->kind >= HKT_EV_MALLOC && ev->kind <= HKT_EV_FREE && !ev->stack_id)
    ev->stack_id = hkt_stack_capture(&R.sp, R.backtrace, 2);
  unsigned nx = hkt_rec_exts(ev, &sl, &bl);
  if (!rec_room(t, 1 + nx, ev->tid)) return;
  if (hkt_unlikely(t->seq_mode == HKT_SEQ_NONE)) seq_join(t);
  hkt_rec *r = t->cur;
  rec_prefetch(r);
  uint64_t seq = rec_seq(t);
  if (rec_halted(t)) halt_if_after_end(seq);
  r->stamp = rec_stamp(t, r, ev->kind > HKT_EV_FREE && !(STAMP_AS_CALLS >> ev->kind & 1));
  hkt_rec_fill(r, ev, nx, sl, bl);
  rec_publish(t, r, seq, 1 + nx);
  ev->seq = seq;
}

/* hak_recorder.emit_call off its hot path: a new chunk, a stack, a thread
 * index >= 0xffff, the thread's first seq. Through rec_emit, the stack
 * captured from here: the allocator and rec_emit_call reach this with jumps, so the next frame is
 * the allocator function that made the call (as for rec_emit). */
static __attribute__((noinline, cold)) void rec_emit_call_slow(uint64_t meta, uint64_t ptr, uint64_t size,
                                                              uint64_t aux, uint64_t aux2, uint64_t caller) {
  hkt_event ev = {.kind = HAK_META_KIND(meta), .fn = HAK_META_FN(meta), .tid = HAK_META_TID(meta),
                  .cls = HAK_META_CLS(meta), .ptr = ptr, .size = size, .aux = aux, .aux2 = aux2,
                  .caller = caller};
  if (R.backtrace) ev.stack_id = hkt_stack_capture(&R.sp, R.backtrace, 1);
  rec_emit(NULL, &ev);
}

/* Halted after the fields were stored: stop here, or publish. */
static __attribute__((noinline, cold)) void rec_emit_call_halt(hkt_rec *r, uint64_t seq, uint64_t stamp) {
  halt_if_after_end(seq);
  r->stamp = stamp;
  rec_publish(&T, r, seq, 1);
}

/* hak_recorder.emit_call: a malloc-family call straight into its record.
 * Its hot path calls nothing (the rare cases are jumps), so it saves no
 * registers; and it stores little: every store before the lock xadd of
 * the seq must reach the cache before the xadd completes, at about one a
 * cycle. So the record goes in four 16-byte stores, the last of them
 * seq1 with the stamp (an aligned 8-byte half is stored whole), and the
 * thread's state is one pointer. */
_Static_assert(offsetof(hkt_rec, stamp) == 8 && offsetof(hkt_rec, ptr) == 16 && offsetof(hkt_rec, size) == 24 &&
               offsetof(hkt_rec, aux) == 32 && offsetof(hkt_rec, aux2) == 40 && offsetof(hkt_rec, caller) == 48 &&
               offsetof(hkt_rec, kind) == 56 && offsetof(hkt_rec, fn) == 58 && offsetof(hkt_rec, cls) == 60 &&
               offsetof(hkt_rec, tid) == 62, "rec_emit_call stores the record as four 16-byte words");

static void rec_emit_call(uint64_t meta, uint64_t ptr, uint64_t size, uint64_t aux, uint64_t aux2,
                          uint64_t caller) {
  struct rec_tls *t = &T;
  hkt_rec *r = t->cur;
  if (hkt_unlikely(R.backtrace | ((uintptr_t)t->end - (uintptr_t)r < sizeof(hkt_rec)) |
                   (HAK_META_TID(meta) >= 0xffff) | (t->seq_mode == HKT_SEQ_NONE))) {
    rec_emit_call_slow(meta, ptr, size, aux, aux2, caller);
    return;
  }
  rec_prefetch(r);
  /* kind, nx 0, fn, cls, tid: the record's last word (spool.h) */
  uint64_t word = (meta & 0xff) | (meta & 0xff00) << 8 | (meta & 0xffff0000) << 16 | (meta >> 32) << 48;
  __m128i *v = (__m128i *)r;
  _mm_store_si128(v + 1, _mm_set_epi64x((long long)size, (long long)ptr));
  _mm_store_si128(v + 2, _mm_set_epi64x((long long)aux2, (long long)aux));
  _mm_store_si128(v + 3, _mm_set_epi64x((long long)word, (long long)caller));
  uint64_t stamp = rec_stamp(t, r, 0);
  uint64_t seq = rec_seq(t);   /* a compiler barrier too: the fields are stored before seq1 */
  if (rec_halted(t)) {
    rec_emit_call_halt(r, seq, stamp);
    return;
  }
  _mm_store_si128(v, _mm_set_epi64x((long long)stamp, (long long)(seq + 1)));   /* publishes it */
  t->cur = r + 1;
}

static const hak_recorder recorder = { .emit = rec_emit, .emit_call = rec_emit_call };
/* With stacks: rec_emit_call_slow skips one frame, the allocator's */
static const hak_recorder recorder_stacks = { .emit = rec_emit, .emit_call = rec_emit_call, .same_depth = 1 };

/* A thread ends: its chunk is complete. */
static void tls_dtor(void *arg) {
  (void)arg;
  if (T.ch) atomic_store_explicit(&T.ch->state, HKT_CHUNK_SEALED, memory_order_release);
  T.ch = NULL;
  T.cur = T.end = NULL;
}

/* ---- start ---- */

static int start(const char *base, int forked) {
  R.pid = (pid_t)syscall(SYS_getpid);
  R.npred = 0;
  R.trace_fd = claim_trace(base, forked);
  if (R.trace_fd < 0) return -1;
  note_abs_path();
  snprintf(R.spool_path, sizeof R.spool_path, "%s.spool", R.trace_path);
  R.backtrace = (unsigned)env_u64("HAKMEM_BACKTRACE", 0, HKT_MAX_STACK_DEPTH);
  uint64_t mb = env_u64("HAKMEM_TRACE_SPOOL_MB", 32, 1u << 16);
  /* The spool lives in tmpfs when there is one (no disk writeback while
   * threads write it; it outlives the process all the same), and FILE.spool
   * links to it. HAKMEM_TRACE_SPOOL_DIR= (empty) keeps it next to FILE. */
  const char *dir = getenv("HAKMEM_TRACE_SPOOL_DIR");
  if (!dir) dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "";
  unlink(R.spool_path);
  snprintf(R.spool_real, sizeof R.spool_real, "%s", R.spool_path);
  if (*dir) {
    snprintf(R.spool_real, sizeof R.spool_real, "%s/hakmem-%d-%llx.spool", dir, (int)R.pid,
             (unsigned long long)(__rdtsc() & 0xffffffffffull));
    if (symlink(R.spool_real, R.spool_path)) snprintf(R.spool_real, sizeof R.spool_real, "%s", R.spool_path);
  }
  int e = hkt_spool_create(&R.sp, R.spool_real, mb << 20, R.backtrace ? 1u << 16 : 0);
  if (e) {
    say("hakmem: trace spool %s: %s; not recording", R.spool_real, strerror(-e));
    if (strcmp(R.spool_real, R.spool_path)) unlink(R.spool_path);
    close(R.trace_fd);
    unlink(R.trace_path);
    R.trace_fd = -1;
    return -1;
  }
  hkt_spool_hdr *h = R.sp.h;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  h->start_realtime_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  h->pid = (uint32_t)R.pid;
  h->ppid = (uint32_t)getppid();
  h->clock_tsc = (uint32_t)have_invariant_tsc();
  h->start_mono_ns = hkt_mono_ns();
  h->tsc0 = h->clock_tsc ? __rdtsc() : h->start_mono_ns;
  h->time_shift = (uint32_t)env_u64("HAKMEM_TRACE_TIME_SHIFT", 8, 32);   /* 256 ns: see the doc */
  h->backtrace = R.backtrace;
  snprintf(h->trace_path, sizeof h->trace_path, "%s", R.trace_path);
  read_cmdline((char *)R.sp.base + HKT_SPOOL_CMDLINE_OFF, HKT_SPOOL_CMDLINE_MAX);
  T = (struct rec_tls){0};
  hkt_solo_init(&SQ, (int)env_u64("HAKMEM_TRACE_SOLO_SEQ", 1, 1));   /* a new process: nobody solo yet */
  atomic_store(&R.stalled_at, 0);
  atomic_store(&R.dropped_reported, 0);
  atomic_store(&R.ending, 0);
  atomic_store(&R.halt, 0);
  atomic_store(&R.writer_up, 0);
  atomic_store_explicit(&R.active, 1, memory_order_release);
  _hak_recorder_attach(R.backtrace ? &recorder_stacks : &recorder);
  return 0;
}

void _hak_recorder_autostart(void) {
  if (R.started) return;
  R.started = 1;
  const char *p = getenv("HAKMEM_TRACE");
  if (!p || !*p) return;
  start(p, 0);
}

/* ---- the writer thread ---- */

static void report_io(const char *what, int err) {
  static _Atomic int reported;
  if (!atomic_exchange(&reported, 1))
    say("hakmem: trace %s: %s: %s; the program goes on, its trace stops here", R.trace_path, what, strerror(err));
}

/* Spools in `dir` left by dead processes whose FILE.spool link is gone
 * too (their trace went with it): nothing can recover them, and in tmpfs
 * they hold memory. Raw getdents: the writer thread does not malloc. */
static void sweep_orphans(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[4096];
  long n;
  while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
    for (long off = 0; off < n;) {
      struct { uint64_t ino; int64_t off; unsigned short reclen; unsigned char type; char name[]; } *d = (void *)(buf + off);
      off += d->reclen;
      int pid = 0;
      if (strncmp(d->name, "hakmem-", 7) || sscanf(d->name + 7, "%d-", &pid) != 1 || pid <= 0) continue;
      size_t nl = strlen(d->name);
      if (nl < 6 || strcmp(d->name + nl - 6, ".spool") || pid == R.pid) continue;
      if (kill(pid, 0) == 0 || errno != ESRCH) continue;   /* alive (or not ours to judge) */
      char path[1100], link[1100], target[1100];
      snprintf(path, sizeof path, "%s/%s", dir, d->name);
      hkt_spool_hdr hd;
      int sfd = open(path, O_RDONLY | O_CLOEXEC);
      if (sfd < 0) continue;
      ssize_t k = pread(sfd, &hd, sizeof hd, 0);
      close(sfd);
      if (k != (ssize_t)sizeof hd || memcmp(hd.magic, HKT_SPOOL_MAGIC, 8)) continue;
      hd.trace_path[sizeof hd.trace_path - 1] = 0;
      snprintf(link, sizeof link, "%s.spool", hd.trace_path);
      ssize_t t = readlink(link, target, sizeof target - 1);
      if (t > 0) { target[t] = 0; if (!strcmp(target, path)) continue; }   /* still recoverable */
      unlink(path);
    }
  }
  close(fd);
}

/* MODULE_LOAD for every module loaded since the last look. */
static void check_modules(hkt_modlist *known, uint64_t *adds) {
  uint64_t a = hkt_modules_adds();
  if (a == *adds) return;
  *adds = a;
  hkt_modlist fresh = {0};
  if (hkt_modules_scan(&fresh, known)) { hkt_modlist_free(&fresh); return; }
  /* The writer borrows the seq counter, so a one-thread program stays solo
   * (solo_seq.h); it joins only if it ever allocates itself. */
  int borrow = fresh.n && T.seq_mode == HKT_SEQ_NONE;
  if (borrow) {
    hkt_solo_borrow(&SQ);
    T.seq_mode = HKT_SEQ_SHARED;
  }
  for (uint32_t i = 0; i < fresh.n; i++) {
    hkt_module *m = &fresh.mods[i];
    hkt_event ev = { .kind = HKT_EV_MODULE_LOAD, .tid = HKT_TID_RECORDER, .cls = HKT_NO_CLASS,
                     .ptr = m->base, .size = m->size, .str = m->path,
                     .bid = m->build_id_len ? m->build_id : NULL, .bid_len = m->build_id_len };
    rec_emit(NULL, &ev);
  }
  if (borrow) {
    T.seq_mode = HKT_SEQ_NONE;
    hkt_solo_give_back(&SQ);
  }
  hkt_modules_scan(known, known);
  hkt_modlist_free(&fresh);
}

/* The spool's first pass: every page a recorded thread touches first is a
 * page fault on its own time (tmpfs: ~1 us each, 16 per chunk; 13% of a
 * short one-thread recording's CPU). So the writer maps the chunks in
 * (MADV_POPULATE_WRITE, Linux 5.14) a little ahead of the claims, which
 * go round the spool in order; after one pass every page is mapped. Only
 * ahead, not all at start: a short program's RSS stays its own. */
#define PREFAULT_AHEAD 64   /* chunks: 4 MiB, ~4 ms of a fast thread's events */
static void prefault_ahead(uint32_t *done) {
  hkt_spool *s = &R.sp;
  uint32_t n = s->h->nchunks, want = atomic_load_explicit(&R.hint, memory_order_relaxed) + PREFAULT_AHEAD;
  if (want > n) want = n;
  if (*done >= want) return;
  if (madvise(hkt_spool_chunk(s, *done), (size_t)(want - *done) * s->h->chunk_bytes, MADV_POPULATE_WRITE))
    want = n;   /* not supported here: the threads fault pages in themselves */
  *done = want;
}

static void *writer_main(void *arg) {
  (void)arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL);
  R.writer_tid = (pid_t)syscall(SYS_gettid);
  T.exempt = 1;
  pthread_setname_np(pthread_self(), "hakmem-writer");   /* for top and perf */
  hkt_spool *s = &R.sp;
  hkt_spool_hdr *h = s->h;
  if (h->clock_tsc) atomic_store(&h->tsc_mult, hkt_tsc_calibrate(h->tsc0, h->start_mono_ns));

  /* images this one replaced by exec: finish their traces */
  for (int i = 0; i < R.npred; i++) {
    hkt_spool old;
    char why[256];
    if (hkt_spool_map(&old, R.pred[i], why, sizeof why)) continue;
    int mine = old.h->pid == (uint32_t)R.pid && atomic_load(&old.h->state) != HKT_SPOOL_DONE;
    hkt_spool_unmap(&old);
    if (mine && hkt_recover(R.pred[i], NULL, HKT_END_EXEC, 0, NULL, why, sizeof why))
      say("hakmem: finishing %s: %s", R.pred[i], why);
  }

  if (strcmp(R.spool_real, R.spool_path)) {
    char dir[1040];
    snprintf(dir, sizeof dir, "%s", R.spool_real);
    char *slash = strrchr(dir, '/');
    if (slash) { *slash = 0; sweep_orphans(dir); }
  }

  hkt_modlist mods = R.mods;   /* taken by the constructor: the modules at start */
  uint64_t adds = R.adds;
  hkt_header hdr;
  hkt_spool_header(s, &hdr);
  hdr.num_modules = mods.n;
  hdr.modules = mods.mods;
  hkt_writer *w = NULL;
  int e = hkt_writer_fdopen(&w, R.trace_fd, R.trace_path, &hdr);
  R.trace_fd = -1;
  /* a frame of at most a quarter of the spool, so that chunks come back */
  uint32_t frame = h->nchunks * HKT_CHUNK_RECS / 4;
  if (w && frame < HKT_DEFAULT_FRAME_EVENTS) hkt_writer_set_frame_events(w, frame);
  /* zstd level 1: as small as level 3 on these streams, at 2/3 of the time */
  int level = (int)env_u64("HAKMEM_TRACE_ZLEVEL", HKT_RECORD_LEVEL, 22);
  if (w) hkt_writer_set_level(w, level);
  if (HKT_IS_ERR(e)) {
    report_io("cannot write the header", errno);
    hkt_writer_open(&w, "/dev/null", &hdr);   /* drain on, so the program never blocks */
  }
  hkt_drain *d = w ? hkt_drain_new(s, w, 0) : NULL;
  if (!d) {
    say("hakmem: trace %s: out of memory in the writer; not recording", R.trace_path);
    atomic_store(&R.active, 0);
    _hak_recorder_attach(NULL);
    return NULL;
  }
  uint32_t prefaulted = 0;
  for (;;) {
    uint32_t seen = atomic_load_explicit(&h->wake, memory_order_acquire);
    int finishing = atomic_load(&h->state) == HKT_SPOOL_FINISHING;
    uint32_t mod_req = atomic_load(&R.mod_req);
    if (!finishing) check_modules(&mods, &adds);
    atomic_store(&R.adds_seen, adds);
    if (mod_req) atomic_store(&R.mod_done, mod_req);
    if (prefaulted < h->nchunks) prefault_ahead(&prefaulted);
    int64_t moved = hkt_drain_step(d, finishing, finishing ? 500 : 0);
    atomic_store_explicit(&h->drained_seq, hkt_drain_next_seq(d), memory_order_relaxed);
    if (moved < 0) {
      /* a full disk (or any write error): say so once, go on into nothing */
      report_io("write failed", hkt_writer_errno(w));
      hkt_writer_close(w, 0);
      hkt_writer *sink = NULL;
      if (HKT_IS_ERR(hkt_writer_open(&sink, "/dev/null", &hdr))) break;
      w = sink;
      if (frame < HKT_DEFAULT_FRAME_EVENTS) hkt_writer_set_frame_events(w, frame);
      uint64_t next = hkt_drain_next_seq(d);
      hkt_drain_free(d);
      d = hkt_drain_new(s, w, next);
      if (!d) break;
      continue;
    }
    if (finishing) {
      e = hkt_drain_finish(d, HKT_END_UNKNOWN, 0);
      if (HKT_IS_ERR(e)) report_io("write failed", errno);
      hkt_drain_free(d);
      atomic_store(&h->state, HKT_SPOOL_DONE);
      unlink(R.spool_path);
      unlink(R.spool_real);
      futex_wake(&h->wake);
      break;
    }
    if (!moved) futex_wait(&h->wake, seen, 2000000);
  }
  hkt_modlist_free(&mods);
  return NULL;
}

static void start_writer(void) {
  pthread_attr_t a;
  pthread_attr_init(&a);
  pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&R.writer, &a, writer_main, NULL) == 0) atomic_store(&R.writer_up, 1);
  else say("hakmem: trace %s: cannot start the writer thread; `hakmem recover %s` can finish it",
           R.trace_path, R.spool_path);
  pthread_attr_destroy(&a);
}

/* ---- the end ---- */

/* Modules loaded since the writer's last look (it looks every 2 ms at
 * most: a program that dlopens and exits would have none) get their
 * MODULE_LOAD before the end: the writer is asked to look once more and
 * waited for, briefly. Not after a crash: the loader may be what broke. */
static void last_module_check(void) {
  hkt_spool_hdr *h = R.sp.h;
  if (!atomic_load(&R.writer_up) || (pid_t)syscall(SYS_gettid) == R.writer_tid ||
      atomic_load(&h->state) != HKT_SPOOL_RUNNING || hkt_modules_adds() == atomic_load(&R.adds_seen))
    return;
  uint32_t want = atomic_fetch_add(&R.mod_req, 1) + 1;
  uint64_t until = hkt_mono_ns() + 200000000u;
  while (atomic_load(&R.mod_done) < want && hkt_mono_ns() < until) {
    futex_wake(&h->wake);
    struct timespec ts = { 0, 50000 };
    nanosleep(&ts, NULL);
  }
}

/* Take the end's seq, let the writer drain up to it, wait for the trace to
 * be complete (giving up after timeout_ms without progress: a loaded
 * machine may need longer in all). Returns 1 if it is. */
static int finish(uint32_t kind, uint32_t status, unsigned timeout_ms) {
  if (!atomic_load(&R.active)) return 0;
  hkt_spool_hdr *h = R.sp.h;
  if (kind == HKT_END_EXIT) last_module_check();
  if (!atomic_exchange(&R.ending, 1)) {
    atomic_store(&h->end_kind, kind);
    atomic_store(&h->end_status, status);
    atomic_store(&h->end_tid, T.tid);
    if (T.seq_mode == HKT_SEQ_NONE) seq_join(&T);
    uint64_t seq = rec_seq(&T);
    atomic_store_explicit(&h->end_seq, seq, memory_order_release);
    atomic_store(&h->state, HKT_SPOOL_FINISHING);
  }
  if (!atomic_load(&R.writer_up) || (pid_t)syscall(SYS_gettid) == R.writer_tid) return 0;
  uint64_t until = hkt_mono_ns() + (uint64_t)timeout_ms * 1000000u, progress = UINT64_MAX;
  while (atomic_load(&h->state) != HKT_SPOOL_DONE) {
    uint32_t seen = atomic_load(&h->wake);
    futex_wake(&h->wake);
    uint64_t now = hkt_mono_ns(), p = atomic_load(&h->drained_seq) + atomic_load(&h->written_events);
    if (p != progress) { progress = p; until = now + (uint64_t)timeout_ms * 1000000u; }
    if (now >= until) return 0;
    futex_wait(&h->wake, seen + 1, 10000000);
  }
  atomic_store(&R.active, 0);
  /* A crash that ends the process (R.halt) leaves the recorder attached
   * until it dies: another thread's next call then stops at its event,
   * after the end, instead of returning unrecorded (recording_over). */
  if (!atomic_load(&R.halt)) _hak_recorder_attach(NULL);
  return 1;
}

/* Registered from the constructor, before __libc_start_main registers the
 * destructors' runner: so it runs after every destructor, with the status. */
static void on_exit_status(int status, void *arg) {
  (void)arg;
  finish(HKT_END_EXIT, (uint32_t)status & 0xff, 30000);
}

/* _exit (alloc/shim.c): no handler runs, so the end is recorded here. Not
 * in a vfork child: it shares its parent's memory, this recorder with it
 * (its own pid says so). */
void _hak_recorder_exit(int status) {
  if (atomic_load(&R.active) && (pid_t)syscall(SYS_getpid) == R.pid) finish(HKT_END_EXIT, (uint32_t)status & 0xff, 30000);
}

static void on_crash(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  int saved = errno;
  /* The signal kills the process (the program has no handler of its own
   * to go on with): every other thread stops at its next event after the
   * end (the writer and this thread go on), so the trace holds every call
   * that returned. Not at exit: a stopped thread may hold a lock exit needs. */
  if (atomic_load(&R.active) && R.old[sig].sa_handler == SIG_DFL) {
    T.exempt = 1;
    atomic_store(&R.halt, 1);
  }
  finish(HKT_END_SIGNAL, (uint32_t)sig, 5000);
  for (size_t i = 0; i < sizeof crash_signals / sizeof *crash_signals; i++)
    sigaction(crash_signals[i], &R.old[crash_signals[i]], NULL);
  errno = saved;
  /* a fault re-executes and now takes the old action; a sent signal is
   * raised again */
  if (si->si_code <= 0 || sig == SIGABRT) raise(sig);
}

static void fill_config(void);

/* The modules loaded now go in the header; later loads become events. */
static void snapshot_modules(void) {
  memset(&R.mods, 0, sizeof R.mods);
  hkt_modules_scan(&R.mods, NULL);
  hkt_modules_to_spool(&R.sp, &R.mods);   /* for a trace finished from the spool */
  R.adds = hkt_modules_adds();
  atomic_store(&R.adds_seen, R.adds);
}

/* ---- fork ---- */

static void fork_child(void) {
  if (!atomic_load(&R.active)) return;
  /* the parent's spool and writer thread are the parent's */
  hkt_spool_unmap(&R.sp);
  atomic_store(&R.active, 0);
  _hak_recorder_attach(NULL);
  if (R.trace_fd >= 0) close(R.trace_fd);
  R.trace_fd = -1;
  static char parent[sizeof R.trace_abs];   /* start() names this process's own trace */
  memcpy(parent, R.trace_abs, sizeof parent);
  const char *p = getenv("HAKMEM_TRACE");
  if (!p || start(p, 1)) return;
  /* The heap here is the parent's at its FORK event (made by the
   * allocator's prepare handler): the header says where that is. */
  if (_hak_fork_seq1) {
    R.sp.h->fork_seq1 = _hak_fork_seq1;
    memcpy(R.sp.h->parent_trace, parent, sizeof R.sp.h->parent_trace);
    R.sp.h->parent_trace[sizeof R.sp.h->parent_trace - 1] = 0;
  }
  fill_config();
  snapshot_modules();   /* the parent's list belongs to the parent's writer */
  start_writer();
}

/* ---- the constructor: what needs libc ---- */

static void fill_config(void) {
  hkt_spool_hdr *h = R.sp.h;
  static hak_stats st;
  hak_stats_get(&st);
  h->arena_base = st.arena_base;
  h->num_classes = st.num_classes > 64 ? 64 : st.num_classes;
  for (uint32_t i = 0; i < h->num_classes && i < HAK_NUM_CLASSES; i++) h->class_size[i] = st.cls[i].block_size;
  _hak_config_describe((char *)R.sp.base + HKT_SPOOL_CONFIG_OFF, HKT_SPOOL_CONFIG_MAX);
}

__attribute__((constructor)) static void rec_ctor(void) {
  const char *lttng = getenv("HAKMEM_LTTNG");   /* that recorder is attached by the allocator */
  if (!R.started && !(lttng && *lttng && strcmp(lttng, "0"))) _hak_recorder_autostart();
  if (!atomic_load(&R.active)) return;
  fill_config();
  if (!getenv("HAKMEM_TRACE_ROOT")) {
    char pid[16];
    snprintf(pid, sizeof pid, "%d", (int)R.pid);
    setenv("HAKMEM_TRACE_ROOT", pid, 1);
  }
  R.key_ok = pthread_key_create(&R.key, tls_dtor) == 0;
  on_exit(on_exit_status, NULL);
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_crash;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof crash_signals / sizeof *crash_signals; i++)
    sigaction(crash_signals[i], &sa, &R.old[crash_signals[i]]);
  pthread_atfork(NULL, NULL, fork_child);
  if (R.backtrace && hkt_stack_init())
    say("hakmem: trace %s: cannot load libgcc_s.so.1 for call stacks; recording without them", R.trace_path);
  /* libzstd now, not in the writer: a module of the header's list, as if
   * it were a NEEDED library, rather than a load event in every trace */
  hkt_zstd();
  snapshot_modules();
  start_writer();
}

/* ---- public API (hakmem.h) ---- */

HAK_API void hak_trace_mark(const char *label) {
  if (!atomic_load_explicit(&R.active, memory_order_acquire)) return;
  char buf[65];
  size_t n = label ? strnlen(label, 64) : 0;
  memcpy(buf, label ? label : "", n);
  buf[n] = 0;
  hkt_event ev = { .kind = HKT_EV_MARK, .tid = _hak_thread_index(), .cls = HKT_NO_CLASS, .str = buf,
                   .caller = (uint64_t)(uintptr_t)__builtin_return_address(0) };
  rec_emit(NULL, &ev);
}

HAK_API int hak_trace_active(void) {
  return atomic_load_explicit(&R.active, memory_order_acquire);
}
