/* debug_case.h — run one allocator scenario in a forked child with its own
 * HAKMEM_* settings and a test recorder, and hand back what it detected.
 * Shared by test_debug.c and test_inject.c (header-only, static functions).
 *
 * The child gets a fresh allocator (the parent never calls hak_*), its
 * settings from setenv and a fresh read before the first call, a recorder attached through
 * alloc/hook.h that numbers events like the real one and keeps DETECTION
 * and SuperSlab events, and stderr in a file. Results live in a shared
 * mapping, so they survive the child's abort. */
#ifndef HAK_TEST_DEBUG_CASE_H
#define HAK_TEST_DEBUG_CASE_H

#include <stdatomic.h>
#include <sys/mman.h>
#include "testutil.h"
#include "internal.h"

#define CASE_MAX_EV 64

typedef struct case_ev { uint32_t kind, fn, tid, cls; uint64_t seq, ptr, aux, aux2; } case_ev;

typedef struct case_out {
  int status;                       /* the child's wait status */
  _Atomic uint64_t next_seq;
  _Atomic uint32_t ndet, nss;
  case_ev det[CASE_MAX_EV];         /* DETECTION events, in order */
  case_ev ss[CASE_MAX_EV];          /* SS_REGISTER / SS_UNREGISTER events */
  uint64_t mark[8];                 /* what the scenario wants checked (pointers...) */
  char err[16384];                  /* the child's stderr */
} case_out;

static case_out *C;                 /* the current case's results (shared mapping) */

static void case_emit(void *ctx, hkt_event *ev) {
  (void)ctx;
  ev->seq = atomic_fetch_add(&C->next_seq, 1);
  case_ev e = {ev->kind, ev->fn, ev->tid, ev->cls, ev->seq, ev->ptr, ev->aux, ev->aux2};
  if (ev->kind == HKT_EV_DETECTION) {
    uint32_t i = atomic_fetch_add(&C->ndet, 1);
    if (i < CASE_MAX_EV) C->det[i] = e;
  } else if (ev->kind == HKT_EV_SS_REGISTER || ev->kind == HKT_EV_SS_UNREGISTER) {
    uint32_t i = atomic_fetch_add(&C->nss, 1);
    if (i < CASE_MAX_EV) C->ss[i] = e;
  }
}
static const hak_recorder case_recorder = {.emit = case_emit};

/* Run fn in a child with the "NAME=VALUE" settings of env (NULL-ended).
 * record: attach the test recorder. Returns the shared results (munmap'ed
 * by the next call). */
static case_out *run_case(const char *const env[], int record, void (*fn)(void)) {
  static size_t len = sizeof(case_out);
  if (C) munmap(C, len);
  C = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (C == MAP_FAILED) { C = NULL; return NULL; }
  char errp[] = "/tmp/hak-case-err-XXXXXX";
  int efd = mkstemp(errp);
  if (efd < 0) return NULL;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(efd, 2);
    unsetenv("HAKMEM_TRACE");
    unsetenv("HAKMEM_DEBUG");
    unsetenv("HAKMEM_INJECT");
    for (int i = 0; env && env[i]; i++) {
      char name[64];
      const char *eq = strchr(env[i], '=');
      size_t n = (size_t)(eq - env[i]);
      memcpy(name, env[i], n);
      name[n] = '\0';
      setenv(name, eq + 1, 1);
    }
    alarm(120);
    /* The library's constructor read the parent's settings before main;
     * nothing has been allocated yet, so reading them again is exact. */
    _hak_config_read();
    _hak_instr_update();   /* the fast paths' one word follows the new level */
    if (record) _hak_recorder_attach(&case_recorder);
    fn();
    _exit(0);
  }
  close(efd);
  if (pid < 0 || waitpid(pid, &C->status, 0) != pid) C->status = -1;
  size_t n = 0;
  char *err = read_whole_file(errp, &n);
  unlink(errp);
  if (err) {
    snprintf(C->err, sizeof C->err, "%s", err);
    free(err);
  }
  return C;
}

/* The first detection of kind det, or NULL. */
static const case_ev *case_find(const case_out *c, unsigned det) {
  uint32_t n = atomic_load(&c->ndet);
  for (uint32_t i = 0; i < n && i < CASE_MAX_EV; i++)
    if (c->det[i].fn == det) return &c->det[i];
  return NULL;
}

/* Does text hold the one-line report of a detection? Either
 * "hakmem: KIND at PTR (seq SEQ, thread T)" or, for bad frees, glibc's
 * words first: "hakmem: free(): ... PTR (KIND, seq SEQ, thread T)". */
static int report_line_ok(const char *text, unsigned det, uint64_t ptr, uint64_t seq, uint32_t tid) {
  char a[160], b[160], s[24] = "-", t[16];
  if (seq != UINT64_MAX) snprintf(s, sizeof s, "%llu", (unsigned long long)seq);
  snprintf(t, sizeof t, "%u", tid);
  snprintf(a, sizeof a, "hakmem: %s at %p (seq %s, thread %s)", hkt_detect_name(det), (void *)(uintptr_t)ptr, s, t);
  snprintf(b, sizeof b, "%p (%s, seq %s, thread %s)", (void *)(uintptr_t)ptr, hkt_detect_name(det), s, t);
  return strstr(text, a) || (strstr(text, b) && strstr(text, "hakmem: free(): "));
}

static int case_line_ok(const case_out *c, const case_ev *d) {
  return report_line_ok(c->err, d->fn, d->ptr, d->seq, d->tid);
}

/* Does text report a detection of kind det (any pointer)? */
static inline int reports_kind(const char *text, unsigned det) {
  char a[64], b[64];
  snprintf(a, sizeof a, "hakmem: %s at 0x", hkt_detect_name(det));
  snprintf(b, sizeof b, " (%s, seq ", hkt_detect_name(det));
  return strstr(text, a) || strstr(text, b);
}

static int case_aborted(const case_out *c) {
  return c->status >= 0 && WIFSIGNALED(c->status) && WTERMSIG(c->status) == SIGABRT;
}

static int case_exited_ok(const case_out *c) {
  return c->status >= 0 && WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
}

#endif /* HAK_TEST_DEBUG_CASE_H */
