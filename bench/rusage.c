/* rusage — run a command and report how it ended, its wall time and its
 * peak RSS, for bench/run.sh (the tools' own memory in the replay and
 * analysis sections; /usr/bin/time is not always installed).
 *
 *   rusage [-o FILE] -- CMD [ARGS...]
 *
 * Writes one line, to FILE or stderr after CMD's own output:
 *   rusage: status=exit:N|signal:N wall_s=S user_s=S sys_s=S maxrss_kb=K
 * Exits with CMD's status, or 128+N if it died of signal N (as a shell
 * does), 127 if it could not be started. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec * 1e-6; }

int main(int argc, char **argv) {
  const char *out_path = NULL;
  int i = 1;
  for (; i < argc; i++) {
    if (!strcmp(argv[i], "--")) { i++; break; }
    if (!strcmp(argv[i], "-o") && i + 1 < argc) { out_path = argv[++i]; continue; }
    fprintf(stderr, "rusage: unknown option '%s'\nusage: rusage [-o FILE] -- CMD [ARGS...]\n", argv[i]);
    return 2;
  }
  if (i >= argc) { fprintf(stderr, "usage: rusage [-o FILE] -- CMD [ARGS...]\n"); return 2; }

  double t0 = now();
  pid_t pid = fork();
  if (pid < 0) { fprintf(stderr, "rusage: fork: %s\n", strerror(errno)); return 127; }
  if (pid == 0) {
    execvp(argv[i], argv + i);
    fprintf(stderr, "rusage: %s: %s\n", argv[i], strerror(errno));
    _exit(127);
  }
  /* Our terminal signals are the child's business; we only report. */
  signal(SIGINT, SIG_IGN);
  signal(SIGQUIT, SIG_IGN);
  int st;
  struct rusage ru;
  while (wait4(pid, &st, 0, &ru) < 0) {
    if (errno != EINTR) { fprintf(stderr, "rusage: wait4: %s\n", strerror(errno)); return 127; }
  }
  double wall = now() - t0;

  FILE *out = stderr;
  if (out_path && !(out = fopen(out_path, "w"))) {
    fprintf(stderr, "rusage: %s: %s\n", out_path, strerror(errno));
    out = stderr;
  }
  int rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  fprintf(out, "rusage: status=%s:%d wall_s=%.4f user_s=%.4f sys_s=%.4f maxrss_kb=%ld\n",
          WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
          wall, tv_s(ru.ru_utime), tv_s(ru.ru_stime), ru.ru_maxrss);
  if (out != stderr) fclose(out);
  return rc;
}
