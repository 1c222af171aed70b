/* lttng_session.c — session daemon, recording session and
 * `hakmem record --lttng`, driven through the lttng(1) command. */
#include "lttng_session.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hakmem/trace.h"

#define HKL_RUNDIR "/run/lttng"   /* root's session daemon run directory */

static void hkl_sleep_ms(int ms) {
  struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
  nanosleep(&ts, NULL);
}

/* Runs argv with stdout+stderr appended to `log` (NULL: inherited).
 * Returns the exit status, or -1 if it could not run or died by a signal. */
static int hkl_run(const char *const *argv, const char *log) {
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (log) {
      int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) { dup2(fd, 1); dup2(fd, 2); }
    }
    execvp(argv[0], (char *const *)argv);
    _exit(127);
  }
  int st;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The last non-empty line of a log, for error messages. */
static void hkl_last_line(const char *log, char *out, size_t n) {
  char buf[4096];
  out[0] = 0;
  int fd = open(log, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  off_t end = lseek(fd, 0, SEEK_END);
  off_t from = end > (off_t)sizeof buf - 1 ? end - (off_t)sizeof buf + 1 : 0;
  ssize_t k = pread(fd, buf, sizeof buf - 1, from);
  close(fd);
  if (k <= 0) return;
  buf[k] = 0;
  while (k > 0 && (buf[k - 1] == '\n' || buf[k - 1] == ' ')) buf[--k] = 0;
  char *line = strrchr(buf, '\n');
  snprintf(out, n, "%.400s", line ? line + 1 : buf);
}

int hkl_lttng(const hkl_daemon *d, const char *const *args) {
  const char *argv[32];
  char log[PATH_MAX + 16], last[512];
  size_t n = 0;
  argv[n++] = "lttng";
  for (; args[n - 1] && n < 31; n++) argv[n] = args[n - 1];
  argv[n] = NULL;
  snprintf(log, sizeof log, "%s/lttng.log", d->dir);
  int rc = hkl_run(argv, log);
  if (rc == 0) return 0;
  hkl_last_line(log, last, sizeof last);
  fprintf(stderr, "hakmem %s: lttng %s failed: %s\n", d->cmd, args[0],
          rc == 127 ? "lttng is not installed (Debian package lttng-tools)" : last);
  return HKT_ERR_IO;
}

/* ---- the session daemon -------------------------------------------------- */

/* Is a session daemon answering for this user (with the current env)? */
static int hkl_daemon_alive(const hkl_daemon *d) {
  const char *argv[] = { "lttng", "list", NULL };
  char log[PATH_MAX + 16];
  snprintf(log, sizeof log, "%s/probe.log", d->dir);
  return hkl_run(argv, log) == 0;
}

/* As root: a private mount namespace in which d->dir/run is /run/lttng, so
 * our daemon's sockets and the clients' never meet another root daemon. */
static int hkl_private_rundir(const hkl_daemon *d) {
  char run[PATH_MAX + 8];
  snprintf(run, sizeof run, "%s/run", d->dir);
  if (mkdir(run, 0755) && errno != EEXIST) return -1;
  if (unshare(CLONE_NEWNS)) return -1;
  if (mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL)) return -1;
  mkdir(HKL_RUNDIR, 0755);  /* the mount point, if the system never had one */
  return mount(run, HKL_RUNDIR, NULL, MS_BIND, NULL);
}

int hkl_daemon_start(hkl_daemon *d, const char *cmd, const char *workdir, int force_own) {
  memset(d, 0, sizeof *d);
  d->cmd = cmd;
  snprintf(d->dir, sizeof d->dir, "%s", workdir);
  if (!force_own && hkl_daemon_alive(d)) return 0;

  char home[PATH_MAX + 8], pidfile[PATH_MAX + 16], log[PATH_MAX + 16];
  snprintf(home, sizeof home, "%s/home", d->dir);
  snprintf(pidfile, sizeof pidfile, "%s/sessiond.pid", d->dir);
  snprintf(log, sizeof log, "%s/sessiond.log", d->dir);
  mkdir(home, 0755);
  if (geteuid() == 0 && hkl_private_rundir(d)) {
    if (force_own || hkl_daemon_alive(d)) {
      fprintf(stderr, "hakmem %s: cannot give our lttng-sessiond its own run directory "
              "(private mount namespace: %s)\n", cmd, strerror(errno));
      return HKT_ERR_IO;
    }
    /* no namespace but no root daemon either: ours takes /run/lttng */
  }
  /* Our home: no auto-loaded sessions, and the non-root run directory. */
  setenv("LTTNG_HOME", home, 1);
  char pidopt[PATH_MAX + 32];
  snprintf(pidopt, sizeof pidopt, "--pidfile=%s", pidfile);
  const char *argv[] = { "lttng-sessiond", "--daemonize", "--no-kernel", pidopt, NULL };
  int rc = hkl_run(argv, log);
  if (rc != 0) {
    char last[512];
    hkl_last_line(log, last, sizeof last);
    fprintf(stderr, "hakmem %s: lttng-sessiond did not start: %s\n", cmd,
            rc == 127 ? "not installed (Debian package lttng-tools)" : last);
    return HKT_ERR_IO;
  }
  FILE *f = fopen(pidfile, "r");
  long pid = 0;
  if (f) { if (fscanf(f, "%ld", &pid) != 1) pid = 0; fclose(f); }
  if (pid <= 0) {
    fprintf(stderr, "hakmem %s: %s: lttng-sessiond wrote no pid\n", cmd, pidfile);
    return HKT_ERR_IO;
  }
  d->pid = (pid_t)pid;
  return 0;
}

/* Gone, or a zombie nobody reaps (it is not our child once daemonized). */
static int hkl_pid_gone(pid_t pid) {
  char path[64], stat[256];
  snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  ssize_t k = read(fd, stat, sizeof stat - 1);
  close(fd);
  if (k <= 0) return 1;
  stat[k] = 0;
  const char *p = strrchr(stat, ')');
  return p && (p[2] == 'Z' || p[2] == 'X');
}

void hkl_daemon_stop(hkl_daemon *d) {
  if (d->pid <= 0) return;
  kill(d->pid, SIGTERM);  /* it stops its consumer daemons itself */
  for (int i = 0; i < 100 && !hkl_pid_gone(d->pid); i++) hkl_sleep_ms(50);
  if (!hkl_pid_gone(d->pid)) kill(d->pid, SIGKILL);
  d->pid = 0;
}

/* ---- the recording session ----------------------------------------------- */

int hkl_session_start(hkl_session *s, const hkl_daemon *d, const char *ctf_dir,
                      int snapshot, const char *events) {
  static unsigned serial;
  memset(s, 0, sizeof *s);
  s->d = d;
  s->snapshot = snapshot;
  snprintf(s->name, sizeof s->name, "hakmem-%d-%u", (int)getpid(), serial++);
  snprintf(s->ctf_dir, sizeof s->ctf_dir, "%s", ctf_dir);
  char out[PATH_MAX + 16];
  snprintf(out, sizeof out, "--output=%s", ctf_dir);
  const char *create[] = { "create", s->name, out, snapshot ? "--snapshot" : NULL, NULL };
  HKT_TRY(hkl_lttng(d, create));
  s->started = 1;  /* from here on, finish() destroys it */
  const char *sess = "--session", *ch = "--channel=hakmem";
  /* 4 MiB x 8 per CPU: room for bursts; blocking makes the rest wait. In
   * snapshot mode the ring is the flight recorder: keep the last 64 MiB. */
  const char *chan_normal[] = { "enable-channel", "--userspace", sess, s->name,
    "--subbuf-size=4M", "--num-subbuf=8", "--blocking-timeout=inf", "hakmem", NULL };
  const char *chan_snap[] = { "enable-channel", "--userspace", sess, s->name,
    "--subbuf-size=4M", "--num-subbuf=16", "--overwrite", "hakmem", NULL };
  const char *enable[] = { "enable-event", "--userspace", sess, s->name, ch, events, NULL };
  const char *ctx[] = { "add-context", "--userspace", sess, s->name, ch,
    "--type=vpid", "--type=vtid", "--type=ip", NULL };
  const char *start[] = { "start", s->name, NULL };
  HKT_TRY(hkl_lttng(d, snapshot ? chan_snap : chan_normal));
  HKT_TRY(hkl_lttng(d, enable));
  HKT_TRY(hkl_lttng(d, ctx));
  return hkl_lttng(d, start);
}

int hkl_session_finish(hkl_session *s) {
  if (!s->started) return 0;
  int rc = 0;
  if (s->snapshot) {
    const char *snap[] = { "snapshot", "record", "--session", s->name, NULL };
    rc = hkl_lttng(s->d, snap);
  }
  const char *stop[] = { "stop", s->name, NULL };
  const char *destroy[] = { "destroy", s->name, NULL };
  int r2 = hkl_lttng(s->d, stop);
  int r3 = hkl_lttng(s->d, destroy);
  s->started = 0;
  return rc ? rc : r2 ? r2 : r3;
}

/* ---- hakmem record --lttng ---------------------------------------------- */

static int hkl_rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st; (void)flag; (void)ftw;
  remove(path);
  return 0;
}

/* DIR of the hakmem binary/../lib, where libhakmem.so and
 * libhakmem-lttng.so are built and installed side by side. */
static int hkl_libhakmem(char *out, size_t n) {
  char exe[PATH_MAX];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (k <= 0) return -1;
  exe[k] = 0;
  char *slash = strrchr(exe, '/');
  if (!slash) return -1;
  *slash = 0;
  snprintf(out, n, "%.4000s/../lib/libhakmem.so", exe);
  return access(out, R_OK);
}

static void hkl_usage(void) {
  fprintf(stderr, "usage: hakmem record --lttng [--snapshot] [-o FILE] [--ctf DIR] -- CMD [ARGS...]\n");
}

int hak_lttng_record(int argc, char **argv) {
  const char *out = NULL, *keep_ctf = NULL;
  int snapshot = 0, i;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--")) { i++; break; }
    if (!strcmp(a, "--lttng")) continue;
    if (!strcmp(a, "--snapshot")) { snapshot = 1; continue; }
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) { hkl_usage(); return 0; }
    if ((!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--ctf")) && i + 1 < argc) {
      if (!strcmp(a, "--ctf")) keep_ctf = argv[++i]; else out = argv[++i];
      continue;
    }
    if (!strcmp(a, "--backtrace")) {
      fprintf(stderr, "hakmem record: --backtrace: not available with --lttng (LTTng has its own "
              "callstack-user context)\n");
      return 2;
    }
    if (a[0] == '-') {
      fprintf(stderr, "hakmem record: %s: unknown or incomplete option with --lttng\n", a);
      hkl_usage();
      return 2;
    }
    break;  /* CMD without `--` */
  }
  if (i >= argc) {
    fprintf(stderr, "hakmem record: no command to run\n");
    hkl_usage();
    return 2;
  }
  char **cmd = argv + i;
  char lib[PATH_MAX], outbuf[64];
  if (hkl_libhakmem(lib, sizeof lib)) {
    fprintf(stderr, "hakmem record: %s: libhakmem.so not found next to the hakmem binary\n", lib);
    return 2;
  }
  if (!out) {
    snprintf(outbuf, sizeof outbuf, "hakmem-%d.hkt.zst", (int)getpid());
    out = outbuf;
  }

  char work[] = "/tmp/hakmem-lttng-XXXXXX", ctf[PATH_MAX];
  if (!mkdtemp(work)) {
    fprintf(stderr, "hakmem record: /tmp: cannot create a work directory: %s\n", strerror(errno));
    return 1;
  }
  if (keep_ctf) snprintf(ctf, sizeof ctf, "%s", keep_ctf);
  else snprintf(ctf, sizeof ctf, "%s/ctf", work);

  hkl_daemon d;
  hkl_session s = { 0 };
  int rc = 1, status = -1;
  if (hkl_daemon_start(&d, "record", work, 0)) goto out;
  if (hkl_session_start(&s, &d, ctf, snapshot, "hakmem:*")) goto out;

  /* Like system(): the terminal's ^C goes to CMD; we finish the trace. */
  struct sigaction ign = { .sa_handler = SIG_IGN }, old_int, old_quit;
  sigaction(SIGINT, &ign, &old_int);
  sigaction(SIGQUIT, &ign, &old_quit);
  pid_t pid = fork();
  if (pid == 0) {
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGQUIT, &old_quit, NULL);
    const char *pre = getenv("LD_PRELOAD");
    char *preload = malloc(strlen(lib) + (pre ? strlen(pre) : 0) + 2);
    if (!preload) _exit(127);
    sprintf(preload, "%s%s%s", lib, pre && *pre ? ":" : "", pre && *pre ? pre : "");
    setenv("LD_PRELOAD", preload, 1);
    setenv("HAKMEM_LTTNG", "1", 1);
    setenv("LTTNG_UST_ALLOW_BLOCKING", "1", 1);
    /* Wait for the session before main(): no event may precede it. */
    setenv("LTTNG_UST_REGISTER_TIMEOUT", "10000", 0);
    unsetenv("HAKMEM_TRACE");  /* one recorder at a time */
    execvp(cmd[0], cmd);
    fprintf(stderr, "hakmem record: %s: %s\n", cmd[0], strerror(errno));
    _exit(127);
  }
  if (pid > 0)
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGQUIT, &old_quit, NULL);
  if (pid < 0) {
    fprintf(stderr, "hakmem record: fork: %s\n", strerror(errno));
    goto out;
  }
  if (hkl_session_finish(&s)) goto out;
  hkl_daemon_stop(&d);

  hkl_import_opts o = { .cmd = "record", .quiet = 1 };
  if (WIFSIGNALED(status)) { o.end_how = HKT_END_SIGNAL; o.end_status = (uint64_t)WTERMSIG(status); }
  else { o.end_how = HKT_END_EXIT; o.end_status = (uint64_t)WEXITSTATUS(status); }
  hkl_import_result r;
  int irc = hkl_import(ctf, out, &o, &r);
  if (irc != HKT_OK && irc != HKT_ERR_SEQUENCE) goto out;
  char how[64];
  if (WIFSIGNALED(status)) snprintf(how, sizeof how, "killed by signal %d", WTERMSIG(status));
  else snprintf(how, sizeof how, "exit status %d", WEXITSTATUS(status));
  printf("hakmem record: %s: %llu events (LTTng, %llu lost), %s\n", out,
         (unsigned long long)r.events, (unsigned long long)(r.missing + r.discarded), how);
  if (irc) rc = 1;
  else rc = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
out:
  hkl_session_finish(&s);
  hkl_daemon_stop(&d);
  nftw(work, hkl_rm_cb, 16, FTW_DEPTH | FTW_PHYS);
  return rc;
}
