/* cmd_record.c — `hakmem record [-o FILE] [--backtrace N] -- CMD [ARGS...]`:
 * run CMD on libhakmem with recording on, wait for it, finish the trace of
 * any process that died without finishing its own (from its spool), and say
 * where the traces are and how the run ended.
 *
 * The recording itself happens in the child (trace/recorder.c); this
 * process only sets the environment (LD_PRELOAD, HAKMEM_TRACE,
 * HAKMEM_TRACE_ROOT, HAKMEM_BACKTRACE) and cleans up after crashes. Forked
 * children and exec'd images write FILE.<pid>[.<n>].hkt.zst next to FILE. */
#include <dirent.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "cli.h"
#include "spool.h"

int hak_lttng_record(int argc, char **argv) __attribute__((weak));

/* <dir of the hakmem binary>/../lib/libhakmem.so */
static int find_lib(char *out, size_t cap) {
  const char *env = getenv("HAKMEM_LIB");
  if (env && *env) { snprintf(out, cap, "%s", env); return access(out, R_OK); }
  char exe[PATH_MAX - 32];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = 0;
  char *slash = strrchr(exe, '/');
  if (!slash) return -1;
  *slash = 0;
  snprintf(out, cap, "%s/../lib/libhakmem.so", exe);
  char real[PATH_MAX];
  if (realpath(out, real)) snprintf(out, cap, "%s", real);
  return access(out, R_OK);
}

/* An absolute path for FILE, so that a CMD that changes directory still
 * writes where the user asked. */
static int absolute(const char *path, char *out, size_t cap) {
  if (path[0] == '/') { snprintf(out, cap, "%s", path); return 0; }
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return -1;
  int n = snprintf(out, cap, "%s/%s", cwd, path);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Is `name` FILE's sibling FILE.<pid>[.<n>].hkt.zst (or FILE.<pid>[.<n>])? */
static int is_sibling(const char *name, const char *stem, const char *ext) {
  size_t sl = strlen(stem), el = strlen(ext), nl = strlen(name);
  if (nl <= sl + 1 + el || strncmp(name, stem, sl) || name[sl] != '.' || strcmp(name + nl - el, ext)) return 0;
  int dots = 0, digits = 0;
  for (size_t i = sl + 1; i < nl - el; i++) {
    if (name[i] == '.') { if (!digits || ++dots > 1) return 0; digits = 0; }
    else if (name[i] >= '0' && name[i] <= '9') digits++;
    else return 0;
  }
  return digits > 0;
}

typedef struct trace_list { char (*paths)[PATH_MAX]; int n, cap; } trace_list;

static void list_add(trace_list *l, const char *p) {
  for (int i = 0; i < l->n; i++) if (!strcmp(l->paths[i], p)) return;
  if (l->n == l->cap) {
    l->cap = l->cap ? l->cap * 2 : 8;
    l->paths = realloc(l->paths, (size_t)l->cap * sizeof *l->paths);
    if (!l->paths) { l->n = l->cap = 0; return; }
  }
  snprintf(l->paths[l->n++], PATH_MAX, "%s", p);
}

static int by_name(const void *a, const void *b) { return strcmp(a, b); }

/* FILE and its siblings written since `since`: FILE first, then by name. */
static void find_traces(const char *file, time_t since, trace_list *out) {
  char dir[PATH_MAX], stem[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", file);
  char *slash = strrchr(dir, '/');
  *slash = 0;
  const char *base = slash + 1;
  const char *ext = ".hkt.zst";
  size_t bl = strlen(base), el = strlen(ext);
  if (bl > el && !strcmp(base + bl - el, ext)) snprintf(stem, sizeof stem, "%.*s", (int)(bl - el), base);
  else { snprintf(stem, sizeof stem, "%s", base); ext = ""; }
  struct stat st;
  if (!stat(file, &st) || !access(file, F_OK)) list_add(out, file);
  DIR *d = opendir(dir[0] ? dir : "/");
  if (!d) return;
  struct dirent *e;
  char p[PATH_MAX + 300];
  while ((e = readdir(d))) {
    const char *name = e->d_name;
    size_t nl = strlen(name);
    int spool = nl > 6 && !strcmp(name + nl - 6, ".spool");
    char trace_name[NAME_MAX + 1];
    snprintf(trace_name, sizeof trace_name, "%.*s", (int)(spool ? nl - 6 : nl), name);
    if (!is_sibling(trace_name, stem, ext)) continue;
    snprintf(p, sizeof p, "%s/%s", dir, trace_name);
    if (!spool && (stat(p, &st) || st.st_mtime < since)) continue;
    list_add(out, p);
  }
  closedir(d);
  int first = out->n && !strcmp(out->paths[0], file);
  if (out->n > first + 1) qsort(out->paths + first, (size_t)(out->n - first), sizeof *out->paths, by_name);
}

/* Events and end of a trace, for the closing line. */
static void describe(const char *path, char *buf, size_t cap) {
  hkt_reader *r = NULL;
  if (HKT_IS_ERR(hkt_reader_open(&r, path))) {
    snprintf(buf, cap, "%s (unreadable: %s)", path, hkt_reader_errmsg(r ? r : NULL));
    hkt_reader_close(r);
    return;
  }
  const hkt_event *evs;
  uint64_t n = 0;
  uint32_t end = HKT_END_UNKNOWN, status = 0;
  int e;
  while ((e = hkt_reader_batch(r, &evs)) > 0) {
    n += (uint64_t)e;
    if (evs[e - 1].kind == HKT_EV_END) { end = evs[e - 1].fn; status = (uint32_t)evs[e - 1].aux; }
  }
  const char *how = hkt_end_name(end);
  char tail[96] = "";
  if (end == HKT_END_EXIT) snprintf(tail, sizeof tail, " status %u", status);
  else if (end == HKT_END_SIGNAL) snprintf(tail, sizeof tail, " %s (signal %u)", strsignal((int)status), status);
  snprintf(buf, cap, "%s (%llu events, %s%s%s%s)", path, (unsigned long long)n, how, tail,
           hkt_reader_complete(r) ? "" : ", incomplete", HKT_IS_ERR(e) ? ", damaged" : "");
  hkt_reader_close(r);
}

int cmd_record(int argc, char **argv) {
  if (cli_help_requested(argc, argv)) return cli_help("record");
  for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
    if (!strcmp(argv[i], "--lttng")) {
      if (!hak_lttng_record) { cli_err("record", "--lttng is not built in this version"); return CLI_EXIT_USAGE; }
      return hak_lttng_record(argc, argv);
    }
  }
  static const struct option opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "backtrace", required_argument, NULL, 'b' },
    { NULL, 0, NULL, 0 },
  };
  const char *out = NULL;
  uint64_t depth = 0;
  int c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "+:o:", opts, NULL)) != -1) {
    if (c == 'o') out = optarg;
    else if (c == 'b') {
      if (cli_u64(optarg, &depth) || depth > HKT_MAX_STACK_DEPTH) {
        char what[128];
        snprintf(what, sizeof what, "--backtrace %s: not a depth from 0 to %u", optarg, HKT_MAX_STACK_DEPTH);
        return cli_usage("record", what);
      }
    } else return cli_bad_option("record", c, argv, optind);
  }
  if (optind >= argc) return cli_usage("record", "missing the command to run (after --)");
  char **cmd = argv + optind;

  char lib[PATH_MAX];
  if (find_lib(lib, sizeof lib)) {
    cli_err("record", "%s: libhakmem.so not found (set HAKMEM_LIB to its path)", lib);
    return CLI_EXIT_USAGE;
  }
  int pipefd[2];   /* the child waits until the parent has named its trace */
  if (pipe(pipefd)) { cli_err("record", "pipe: %s", strerror(errno)); return CLI_EXIT_USAGE; }
  time_t since = time(NULL) - 1;
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) { cli_err("record", "fork: %s", strerror(errno)); return CLI_EXIT_USAGE; }
  char file[PATH_MAX], name[PATH_MAX];
  pid_t child = pid ? pid : getpid();
  if (out) snprintf(name, sizeof name, "%s", out);
  else snprintf(name, sizeof name, "hakmem-%d.hkt.zst", (int)child);
  if (absolute(name, file, sizeof file)) {
    if (!pid) _exit(127);
    cli_err("record", "%s: path too long", name);
    return CLI_EXIT_USAGE;
  }
  if (!pid) {
    char go;
    close(pipefd[1]);
    if (read(pipefd[0], &go, 1) != 1) _exit(127);
    close(pipefd[0]);
    char pre[PATH_MAX * 2], root[24], bt[24];
    const char *old = getenv("LD_PRELOAD");
    if (old && *old) snprintf(pre, sizeof pre, "%s:%s", lib, old);
    else snprintf(pre, sizeof pre, "%s", lib);
    snprintf(root, sizeof root, "%d", (int)getpid());
    snprintf(bt, sizeof bt, "%llu", (unsigned long long)depth);
    setenv("LD_PRELOAD", pre, 1);
    setenv("HAKMEM_TRACE", file, 1);
    setenv("HAKMEM_TRACE_ROOT", root, 1);
    if (depth) setenv("HAKMEM_BACKTRACE", bt, 1);
    else unsetenv("HAKMEM_BACKTRACE");
    execvp(cmd[0], cmd);
    fprintf(stderr, "hakmem record: %s: %s\n", cmd[0], strerror(errno));
    _exit(127);
  }
  close(pipefd[0]);
  /* a trace left from an earlier run must not look like this run's */
  unlink(file);
  char sp[PATH_MAX + 8];
  snprintf(sp, sizeof sp, "%s.spool", file);
  unlink(sp);
  ssize_t k = write(pipefd[1], "g", 1);
  (void)k;
  close(pipefd[1]);

  struct sigaction ign = { .sa_handler = SIG_IGN }, old_int, old_quit;
  sigaction(SIGINT, &ign, &old_int);   /* the child gets them; we report */
  sigaction(SIGQUIT, &ign, &old_quit);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGQUIT, &old_quit, NULL);
  uint32_t end_kind = WIFSIGNALED(status) ? HKT_END_SIGNAL : HKT_END_EXIT;
  uint32_t end_status = WIFSIGNALED(status) ? (uint32_t)WTERMSIG(status) : (uint32_t)WEXITSTATUS(status);
  int rc = WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && access(file, F_OK)) return 127;  /* exec failed */

  /* finish every trace whose process is gone but whose spool is left */
  trace_list traces = {0};
  find_traces(file, since, &traces);
  for (int i = 0; i < traces.n; i++) {
    snprintf(sp, sizeof sp, "%s.spool", traces.paths[i]);
    if (access(sp, F_OK)) continue;
    char why[600];
    hkt_spool s;
    if (HKT_IS_ERR(hkt_spool_map(&s, sp, why, sizeof why))) { cli_err("record", "%s: %s", sp, why); continue; }
    pid_t owner = (pid_t)s.h->pid;
    hkt_spool_unmap(&s);
    if (owner != pid && kill(owner, 0) == 0) {
      cli_err("record", "%s: process %d still runs; its trace is not finished", traces.paths[i], (int)owner);
      continue;
    }
    int e = owner == pid ? hkt_recover(sp, NULL, end_kind, end_status, NULL, why, sizeof why)
                         : hkt_recover(sp, NULL, HKT_END_UNKNOWN, 0, NULL, why, sizeof why);
    if (HKT_IS_ERR(e)) cli_err("record", "%s: %s", sp, why);
  }
  if (!traces.n) {
    cli_err("record", "%s: no trace was written (is %s usable by %s?)", file, lib, cmd[0]);
  } else {
    /* A few traces on one line; a program that ran many processes (a
     * shell script, a build) gets one line per trace after the count. */
    int many = traces.n > 3;
    fprintf(stderr, "hakmem record: ");
    if (many) fprintf(stderr, "%d traces", traces.n);
    for (int i = 0; i < traces.n && !many; i++) {
      char d[PATH_MAX + 200];
      describe(traces.paths[i], d, sizeof d);
      fprintf(stderr, "%s%s", i ? "; " : "", d);
    }
    if (WIFSIGNALED(status)) fprintf(stderr, "; %s died of signal %d\n", cmd[0], WTERMSIG(status));
    else fprintf(stderr, "; %s exited with %d\n", cmd[0], WEXITSTATUS(status));
    for (int i = 0; i < traces.n && many; i++) {
      char d[PATH_MAX + 200];
      describe(traces.paths[i], d, sizeof d);
      fprintf(stderr, "  %s\n", d);
    }
  }
  free(traces.paths);
  return rc;
}
