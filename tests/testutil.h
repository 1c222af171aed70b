/* progutil.h — what the tests that run real programs share: a scratch
 * directory, building a helper from tests/preload_progs/, and running a
 * command with extra environment, a timeout and its output captured.
 *
 * Header-only (static functions) so that each test binary stays one file as
 * the Makefile builds them. Everything here runs in the test process, which
 * uses the system malloc (tests link the core archive, not the shim). */
#ifndef HAK_TEST_PROGUTIL_H
#define HAK_TEST_PROGUTIL_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The output of one program run. status is waitpid's, or -1 if it could
 * not be started; timed_out says it was killed after the timeout. */
typedef struct prog_result {
  int status;
  int timed_out;
  char *out;   /* stdout, NUL-terminated */
  size_t out_len;
  char *err;   /* stderr, NUL-terminated */
  size_t err_len;
} prog_result;

static inline void prog_result_free(prog_result *r) {
  free(r->out);
  free(r->err);
  memset(r, 0, sizeof *r);
}

static inline int prog_exited_ok(const prog_result *r) {
  return r->status >= 0 && !r->timed_out && WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0;
}

static inline int prog_signal(const prog_result *r) {
  return (r->status >= 0 && WIFSIGNALED(r->status)) ? WTERMSIG(r->status) : 0;
}

/* The build directory the tests belong to (absolute), e.g. /repo/build. */
static inline const char *test_build_dir(void) {
  static char dir[PATH_MAX];
  if (!dir[0]) {
    const char *b = getenv("HAKMEM_BUILD");
    if (!b || !*b) b = "build";
    if (!realpath(b, dir)) snprintf(dir, sizeof dir, "%s", b);
  }
  return dir;
}

/* Absolute path of the preloadable library, "" if it is missing. */
static inline const char *test_libhakmem(void) {
  static char path[PATH_MAX + 32];
  snprintf(path, sizeof path, "%s/lib/libhakmem.so", test_build_dir());
  return access(path, R_OK) == 0 ? path : "";
}

static inline char *read_whole_file(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf) { if (f) fclose(f); return NULL; }
  if (f) {
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, f)) > 0) {
      n += k;
      if (cap - n - 1 == 0) {
        char *nb = realloc(buf, cap * 2);
        if (!nb) break;
        buf = nb;
        cap *= 2;
      }
    }
    fclose(f);
  }
  buf[n] = '\0';
  if (len) *len = n;
  return buf;
}

static inline int write_whole_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  if (!f) return -1;
  int ok = fputs(text, f) >= 0;
  return (fclose(f) == 0 && ok) ? 0 : -1;
}

/* Run argv[0] (searched in PATH) in directory `cwd` (NULL: here) with the
 * "NAME=value" strings of `env` added (NULL-terminated; "NAME=" alone
 * removes NAME), stdin from /dev/null, killing it after timeout_s. */
static inline int run_prog(const char *cwd, char *const argv[], const char *const env[],
                    int timeout_s, prog_result *r) {
  char outp[] = "/tmp/hak-prog-out-XXXXXX", errp[] = "/tmp/hak-prog-err-XXXXXX";
  memset(r, 0, sizeof *r);
  r->status = -1;
  int ofd = mkstemp(outp), efd = mkstemp(errp);
  if (ofd < 0 || efd < 0) return -1;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    int in = open("/dev/null", O_RDONLY);
    dup2(in, 0);
    dup2(ofd, 1);
    dup2(efd, 2);
    setpgid(0, 0);  /* so a timeout can kill the whole group */
    for (int i = 0; env && env[i]; i++) {
      char name[256];
      const char *eq = strchr(env[i], '=');
      size_t n = eq ? (size_t)(eq - env[i]) : strlen(env[i]);
      if (n >= sizeof name) continue;
      memcpy(name, env[i], n);
      name[n] = '\0';
      if (eq && eq[1]) setenv(name, eq + 1, 1);
      else unsetenv(name);
    }
    if (cwd && chdir(cwd) != 0) _exit(126);
    execvp(argv[0], argv);
    dprintf(2, "run_prog: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(ofd);
  close(efd);
  if (pid < 0) { unlink(outp); unlink(errp); return -1; }
  struct timespec tick = {0, 5 * 1000 * 1000};
  long waited_ms = 0;
  for (;;) {
    pid_t w = waitpid(pid, &r->status, WNOHANG);
    if (w == pid) break;
    if (w < 0 && errno != EINTR) { r->status = -1; break; }
    if (waited_ms >= (long)timeout_s * 1000) {
      r->timed_out = 1;
      kill(-pid, SIGKILL);
      kill(pid, SIGKILL);
      waitpid(pid, &r->status, 0);
      break;
    }
    nanosleep(&tick, NULL);
    waited_ms += 5;
  }
  r->out = read_whole_file(outp, &r->out_len);
  r->err = read_whole_file(errp, &r->err_len);
  unlink(outp);
  unlink(errp);
  return 0;
}

/* Describe a result in one line, for assertion messages. */
static inline const char *prog_describe(const prog_result *r) {
  static char buf[1024];
  if (r->timed_out) snprintf(buf, sizeof buf, "timed out");
  else if (r->status < 0) snprintf(buf, sizeof buf, "not started");
  else if (WIFSIGNALED(r->status)) snprintf(buf, sizeof buf, "killed by signal %d", WTERMSIG(r->status));
  else snprintf(buf, sizeof buf, "exit status %d", WEXITSTATUS(r->status));
  size_t n = strlen(buf);
  if (r->err && r->err_len)
    snprintf(buf + n, sizeof buf - n, "; stderr: %.700s", r->err);
  return buf;
}

/* Compile tests/preload_progs/<name>.c into <dir>/<name> with `extra` flags
 * (a space-free list of flags, up to 8); 0 on success. */
static inline int build_helper(const char *dir, const char *name, const char *const extra[]) {
  char src[PATH_MAX], exe[PATH_MAX];
  snprintf(src, sizeof src, "tests/preload_progs/%s.c", name);
  snprintf(exe, sizeof exe, "%s/%s", dir, name);
  char *argv[24];
  int n = 0;
  argv[n++] = "cc";
  argv[n++] = "-O1";
  argv[n++] = "-g";
  argv[n++] = "-pthread";
  argv[n++] = "-Iinclude";
  argv[n++] = "-o";
  argv[n++] = exe;
  argv[n++] = src;
  for (int i = 0; extra && extra[i] && n < 22; i++) argv[n++] = (char *)extra[i];
  argv[n] = NULL;
  prog_result r;
  if (run_prog(NULL, argv, NULL, 120, &r) != 0) return -1;
  int ok = prog_exited_ok(&r);
  if (!ok) fprintf(stderr, "build_helper %s: %s\n", name, prog_describe(&r));
  prog_result_free(&r);
  return ok ? 0 : -1;
}

/* A fresh scratch directory under /tmp, and its removal. */
static inline char *make_scratch_dir(void) {
  char tmpl[] = "/tmp/hakmem-test-XXXXXX";
  char *d = mkdtemp(tmpl);
  return d ? strdup(d) : NULL;
}

static inline void remove_scratch_dir(char *dir) {
  if (!dir) return;
  if (strncmp(dir, "/tmp/hakmem-test-", 17) == 0) {
    char *argv[] = {"rm", "-rf", dir, NULL};
    prog_result r;
    if (run_prog(NULL, argv, NULL, 60, &r) == 0) prog_result_free(&r);
  }
  free(dir);
}

/* Non-zero when the suite runs under a sanitizer: preloading the
 * (instrumented) library into other programs is then skipped. */
static inline int under_sanitizer(void) {
  const char *s = getenv("HAKMEM_TEST_SAN");
  return s && *s;
}

#endif /* HAK_TEST_PROGUTIL_H */
