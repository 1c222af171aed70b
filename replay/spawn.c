/* spawn.c — replay processes: their environment, starting one as a child,
 * and the result it sends back.
 *
 * The allocator reads its configuration once, when the process starts, so
 * a replay against hakmem runs in a process started with the trace's
 * configuration: `hakmem replay` re-executes itself (`--run MODE`) with the
 * environment made from the trace header — in place for one replay (so a
 * debugger follows it to --stop-at), as children for --repeat, --against
 * and minimize, which send their result back on a pipe (`--result-fd`) as
 * "key values" lines. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/wait.h>
#include <unistd.h>
#include "replay.h"

extern char **environ;

/* ---- environment of a replay process ---- */

/* Every HAKMEM_* setting but the replayer's own (HAKMEM_REPLAY_*). */
static void clear_hakmem_env(void) {
  for (;;) {
    char name[256] = "";
    for (char **e = environ; *e; e++) {
      if (strncmp(*e, "HAKMEM_", 7) || !strncmp(*e, "HAKMEM_REPLAY_", 14)) continue;
      const char *eq = strchr(*e, '=');
      size_t n = eq ? (size_t)(eq - *e) : strlen(*e);
      if (n >= sizeof name) n = sizeof name - 1;
      memcpy(name, *e, n);
      name[n] = 0;
      break;
    }
    if (!name[0]) return;
    unsetenv(name);
  }
}

/* The trace's configuration, the recorded arena base, and errors that go
 * on (so a detection does not end the replay); nothing recorded again. */
void rp_env_for_hakmem(const hkt_header *h) {
  clear_hakmem_env();
  const char *c = h->config ? h->config : "";
  while (*c) {
    const char *nl = strchr(c, '\n');
    size_t len = nl ? (size_t)(nl - c) : strlen(c);
    char line[512];
    if (len < sizeof line && !strncmp(c, "HAKMEM_", 7)) {
      memcpy(line, c, len);
      line[len] = 0;
      char *eq = strchr(line, '=');
      if (eq) { *eq = 0; setenv(line, eq + 1, 1); }
    }
    c += len + (nl ? 1 : 0);
  }
  unsetenv("HAKMEM_TRACE");
  unsetenv("HAKMEM_LTTNG");
  unsetenv("HAKMEM_STATS");
  setenv("HAKMEM_ON_ERROR", "continue", 1);
  if (h->arena_base) {
    char b[32];
    snprintf(b, sizeof b, "0x%" PRIx64, h->arena_base);
    setenv("HAKMEM_ARENA_BASE", b, 1);
  }
}

/* ---- results across a pipe: "key values..." lines ---- */

static void put_event(FILE *f, const char *key, const hkt_event *e) {
  fprintf(f, "%s %" PRIu64 " %u %u %u %u %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 "\n", key,
          e->seq, e->kind, e->fn, e->tid, e->cls, e->ptr, e->size, e->aux, e->aux2, e->aux3);
}

static void get_event(const char *s, hkt_event *e) {
  unsigned kind = 0, fn = 0, tid = 0, cls = 0;
  memset(e, 0, sizeof *e);
  sscanf(s, "%" SCNu64 " %u %u %u %u %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64, &e->seq, &kind,
         &fn, &tid, &cls, &e->ptr, &e->size, &e->aux, &e->aux2, &e->aux3);
  e->kind = (uint16_t)kind; e->fn = (uint16_t)fn; e->tid = tid; e->cls = cls;
}

void rp_result_write(int fd, const rp_result *r, int crash_sig) {
  char buf[8192];
  FILE *f = fmemopen(buf, sizeof buf, "w");
  if (!f) return;
  fprintf(f, "events %" PRIu64 "\nreplayed %" PRIu64 "\nthreads %u\nlast_seq %" PRIu64 "\n", r->events,
          r->replayed, r->threads, r->last_seq);
  fprintf(f, "complete %d %u %" PRIu64 "\nflags %d %d %d %d %d %d\n", r->complete, r->end_kind, r->end_aux,
          r->diverged, r->div_got_none, r->div_exp_none, r->stalled, r->stopped, r->beyond_end);
  if (r->diverged) { put_event(f, "exp", &r->div_expected); put_event(f, "got", &r->div_got); }
  for (uint32_t i = 0; i < r->ndet; i++)
    fprintf(f, "det %" PRIu64 " %u %" PRIu64 " %u\n", r->det[i].seq, r->det[i].kind, r->det[i].ptr, r->det[i].tid);
  fprintf(f, "ndet %u\nseconds %.6f\ndigest %" PRIx64 "\nbases %" PRIx64 " %" PRIx64 "\n", r->ndet_total,
          r->seconds, r->digest, r->rec_base, r->rep_base);
  fprintf(f, "ahead %d %" PRIu64 "\n", r->ahead, r->ran_ahead);
  if (r->inj_fired) fprintf(f, "inject %" PRIu64 " %" PRIu64 " %u\n", r->inj_seq, r->inj_after, r->inj_tid);
  if (r->seq_base) fprintf(f, "fork %" PRIu64 " %s\n", r->seq_base, r->div_parent);
  if (r->read_err) fprintf(f, "read_err %d %s\n", r->read_err, r->read_msg);
  if (crash_sig) fprintf(f, "crash %d %" PRId64 "\n", crash_sig, rp_last_done_own());
  fputs("done\n", f);
  long n = ftell(f);
  fclose(f);
  for (long off = 0; off < n;) {
    ssize_t k = write(fd, buf + off, (size_t)(n - off));
    if (k <= 0) break;
    off += k;
  }
}

/* Parse what a child wrote; 1 if it finished its report ("done"). */
static int result_parse(const char *text, rp_result *r, rp_child *c) {
  memset(r, 0, sizeof *r);
  int done = 0;
  for (const char *s = text; s && *s;) {
    const char *nl = strchr(s, '\n');
    char line[600];
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    if (len >= sizeof line) len = sizeof line - 1;
    memcpy(line, s, len);
    line[len] = 0;
    s = nl ? nl + 1 : NULL;
    char *v = strchr(line, ' ');
    if (v) *v++ = 0; else v = line + len;
    if (!strcmp(line, "events")) r->events = strtoull(v, NULL, 10);
    else if (!strcmp(line, "replayed")) r->replayed = strtoull(v, NULL, 10);
    else if (!strcmp(line, "threads")) r->threads = (uint32_t)strtoul(v, NULL, 10);
    else if (!strcmp(line, "last_seq")) r->last_seq = strtoull(v, NULL, 10);
    else if (!strcmp(line, "complete")) sscanf(v, "%d %u %" SCNu64, &r->complete, &r->end_kind, &r->end_aux);
    else if (!strcmp(line, "flags"))
      sscanf(v, "%d %d %d %d %d %d", &r->diverged, &r->div_got_none, &r->div_exp_none, &r->stalled,
             &r->stopped, &r->beyond_end);
    else if (!strcmp(line, "exp")) get_event(v, &r->div_expected);
    else if (!strcmp(line, "got")) get_event(v, &r->div_got);
    else if (!strcmp(line, "det") && r->ndet < RP_MAX_DET) {
      rp_detection *d = &r->det[r->ndet++];
      sscanf(v, "%" SCNu64 " %u %" SCNu64 " %u", &d->seq, &d->kind, &d->ptr, &d->tid);
    } else if (!strcmp(line, "ndet")) r->ndet_total = (uint32_t)strtoul(v, NULL, 10);
    else if (!strcmp(line, "seconds")) r->seconds = strtod(v, NULL);
    else if (!strcmp(line, "digest")) r->digest = strtoull(v, NULL, 16);
    else if (!strcmp(line, "ahead")) sscanf(v, "%d %" SCNu64, &r->ahead, &r->ran_ahead);
    else if (!strcmp(line, "inject"))
      r->inj_fired = sscanf(v, "%" SCNu64 " %" SCNu64 " %u", &r->inj_seq, &r->inj_after, &r->inj_tid) == 3;
    else if (!strcmp(line, "bases")) sscanf(v, "%" SCNx64 " %" SCNx64, &r->rec_base, &r->rep_base);
    else if (!strcmp(line, "fork")) {
      char *m = strchr(v, ' ');
      r->seq_base = strtoull(v, NULL, 10);
      snprintf(r->div_parent, sizeof r->div_parent, "%s", m ? m + 1 : "");
    }
    else if (!strcmp(line, "read_err")) {
      char *m = strchr(v, ' ');
      r->read_err = atoi(v);
      snprintf(r->read_msg, sizeof r->read_msg, "%s", m ? m + 1 : "");
    } else if (!strcmp(line, "crash") && c) sscanf(v, "%d %" SCNd64, &c->crash_sig, &c->crash_after);
    else if (!strcmp(line, "done")) done = 1;
  }
  return done;
}

/* ---- running a replay in a child ---- */

static int self_exe(char *buf, size_t n) {
  ssize_t k = readlink("/proc/self/exe", buf, n - 1);
  if (k <= 0) return -1;
  buf[k] = 0;
  return 0;
}

/* Start `hakmem replay PATH --run MODE --result-fd N` with the environment
 * of this process (the caller prepared it; preload: LD_PRELOAD for the
 * child, "" for none). Collects its result, its stderr and how it ended. */
int rp_spawn(const char *path, const char *mode, const char *preload, double timeout_s,
             const char *record_to, rp_result *res, rp_child *c) {
  char exe[4096], fdarg[16], tmo[32];
  memset(c, 0, sizeof *c);
  c->crash_after = -1;
  if (self_exe(exe, sizeof exe)) return HKT_ERR_IO;
  int rp[2], ep[2];
  if (pipe2(rp, O_CLOEXEC) || pipe2(ep, O_CLOEXEC)) return HKT_ERR_IO;
  /* RP_FUNCS children tell where they are through a shared page, so a
   * crash can be placed at its call. */
  int sfd = memfd_create("hakmem-replay-seq", 0);
  volatile uint64_t *shared = NULL;
  if (sfd >= 0 && ftruncate(sfd, 4096) == 0) {
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, sfd, 0);
    if (m != MAP_FAILED) { shared = m; shared[0] = UINT64_MAX; }
  }
  snprintf(tmo, sizeof tmo, "%g", timeout_s);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return HKT_ERR_IO;
  if (pid == 0) {
    dup2(rp[1], 3);
    dup2(ep[1], 2);
    if (sfd >= 0) dup2(sfd, 4);
    snprintf(fdarg, sizeof fdarg, "%d", 3);
    if (preload) {
      if (*preload) setenv("LD_PRELOAD", preload, 1);
      else unsetenv("LD_PRELOAD");
    }
    char *argv[16];
    int n = 0;
    argv[n++] = exe; argv[n++] = "replay"; argv[n++] = (char *)path; argv[n++] = "--run";
    argv[n++] = (char *)mode; argv[n++] = "--result-fd"; argv[n++] = fdarg;
    argv[n++] = "--timeout"; argv[n++] = tmo;
    if (record_to) { argv[n++] = "--record-to"; argv[n++] = (char *)record_to; }
    if (sfd >= 0) { argv[n++] = "--seq-fd"; argv[n++] = "4"; }
    argv[n] = NULL;
    execv(exe, argv);
    _exit(127);
  }
  close(rp[1]);
  close(ep[1]);
  /* Read both pipes to their ends together: a chatty child must not block
   * on a full stderr pipe while we wait for its result. */
  char out[16384];
  size_t olen = 0, elen = 0;
  c->err[0] = 0;
  int open_r = 1, open_e = 1;
  while (open_r || open_e) {
    fd_set s;
    FD_ZERO(&s);
    if (open_r) FD_SET(rp[0], &s);
    if (open_e) FD_SET(ep[0], &s);
    if (select((rp[0] > ep[0] ? rp[0] : ep[0]) + 1, &s, NULL, NULL, NULL) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    char tmp[4096];
    if (open_r && FD_ISSET(rp[0], &s)) {
      ssize_t k = read(rp[0], tmp, sizeof tmp);
      if (k <= 0) open_r = 0;
      else if (olen + (size_t)k < sizeof out) { memcpy(out + olen, tmp, (size_t)k); olen += (size_t)k; }
    }
    if (open_e && FD_ISSET(ep[0], &s)) {
      ssize_t k = read(ep[0], tmp, sizeof tmp);
      if (k <= 0) open_e = 0;
      else {
        if (elen + (size_t)k >= sizeof c->err) {   /* keep the tail */
          size_t drop = elen + (size_t)k - (sizeof c->err - 1);
          if (drop > elen) drop = elen;
          memmove(c->err, c->err + drop, elen - drop);
          elen -= drop;
        }
        size_t n = (size_t)k < sizeof c->err - 1 - elen ? (size_t)k : sizeof c->err - 1 - elen;
        memcpy(c->err + elen, tmp, n);
        elen += n;
      }
    }
  }
  out[olen] = 0;
  c->err[elen] = 0;
  close(rp[0]);
  close(ep[0]);
  int st = 0;
  while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
  c->status = st;
  c->finished = result_parse(out, res, c);
  if (shared) {
    c->at_seq = shared[0];
    munmap((void *)shared, 4096);
  } else {
    c->at_seq = UINT64_MAX;
  }
  if (sfd >= 0) close(sfd);
  return 0;
}

/* The last line of a child's stderr that says something (glibc's abort
 * message, hakmem's detection line). */
void rp_child_message(const rp_child *c, char *buf, size_t n) {
  buf[0] = 0;
  const char *e = c->err;
  size_t len = strlen(e);
  while (len && (e[len - 1] == '\n' || e[len - 1] == ' ')) len--;
  size_t start = len;
  while (start && e[start - 1] != '\n') start--;
  size_t k = len - start < n - 1 ? len - start : n - 1;
  memcpy(buf, e + start, k);
  buf[k] = 0;
}

/* ---- a replay server: one exec, a fork per replay ----
 *
 * minimize replays thousands of candidates; exec'ing the tool for each
 * costs more than most replays. The server is this tool re-executed once
 * with the trace's configuration (`hakmem replay --serve MODE`): its
 * allocator is set up and untouched, so each fork of it starts a replay
 * on a fresh heap, as a new process would. Requests are trace paths, one
 * a line, on its stdin; each answer is the child's result lines, then
 * "status N" (its wait status) and "end". */

int rp_server_start(rp_server *s, const char *mode, double timeout_s) {
  char exe[4096], tmo[32];
  memset(s, 0, sizeof *s);
  if (self_exe(exe, sizeof exe)) return HKT_ERR_IO;
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) return HKT_ERR_IO;
  snprintf(tmo, sizeof tmo, "%g", timeout_s);
  fflush(NULL);
  pid_t pid = fork();
  if (pid < 0) return HKT_ERR_IO;
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 2);   /* the allocator's detection lines */
    char *argv[] = {exe, "replay", "-", "--serve", (char *)mode, "--timeout", tmo, NULL};
    execv(exe, argv);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  s->pid = pid;
  s->to = fdopen(in[1], "w");
  s->from = fdopen(out[0], "r");
  return s->to && s->from ? 0 : HKT_ERR_IO;
}

int rp_server_run(rp_server *s, const char *path, rp_result *res, rp_child *c) {
  static char text[16384];
  char line[700];
  size_t len = 0;
  memset(c, 0, sizeof *c);
  c->crash_after = -1;
  c->at_seq = UINT64_MAX;
  if (fprintf(s->to, "%s\n", path) < 0 || fflush(s->to)) return HKT_ERR_IO;
  for (;;) {
    if (!fgets(line, sizeof line, s->from)) return HKT_ERR_IO;
    if (!strcmp(line, "end\n")) break;
    if (!strncmp(line, "status ", 7)) { c->status = atoi(line + 7); continue; }
    size_t n = strlen(line);
    if (len + n < sizeof text) { memcpy(text + len, line, n); len += n; }
  }
  text[len] = 0;
  c->finished = result_parse(text, res, c);
  return 0;
}

void rp_server_stop(rp_server *s) {
  if (s->to) fclose(s->to);
  if (s->from) fclose(s->from);
  if (s->pid > 0) {
    int st;
    while (waitpid(s->pid, &st, 0) < 0 && errno == EINTR) {}
  }
  memset(s, 0, sizeof *s);
}

/* The server's side: fork a replay per path read from stdin. */
int rp_serve(rp_mode mode, double timeout_s, int (*run)(const char *path, rp_mode mode, double timeout_s)) {
  char path[4096];
  while (fgets(path, sizeof path, stdin)) {
    path[strcspn(path, "\n")] = 0;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) return 2;
    if (pid == 0) _exit(run(path, mode, timeout_s));   /* writes its result on stdout */
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    printf("status %d\nend\n", st);
    fflush(stdout);
  }
  return 0;
}
