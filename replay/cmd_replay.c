/* cmd_replay.c — `hakmem replay FILE [--against hakmem|system|LIB.so]
 * [--repeat N] [--json] [--stop-at SEQ] [--timeout S]`.
 *
 * Against hakmem one replay runs in place (this process re-executes itself
 * with the trace's configuration, see spawn.c); --repeat runs each replay
 * in a child and compares them. Against another allocator a child with
 * that allocator preloaded makes the same calls in the same order.
 * docs/replay.md describes the output, the JSON object and exit codes. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "../tools/cli.h"
#include "replay.h"

enum { EXIT_IDENTICAL = 0, EXIT_DIVERGED = 1, EXIT_ERROR = 2, EXIT_REPRODUCED = 3 };

typedef struct report_opts {
  const char *path, *against;
  int json;
  uint64_t stop_at;
} report_opts;

static int exit_code(const rp_result *r, int crash_sig) {
  if (r->diverged || r->stalled) return EXIT_DIVERGED;
  if (crash_sig) return r->complete && r->end_kind == HKT_END_EXIT ? EXIT_DIVERGED : EXIT_REPRODUCED;
  return r->ndet_total ? EXIT_REPRODUCED : EXIT_IDENTICAL;
}

static const char *sig_name(int sig) {
  static char buf[16];
  const char *n = sigabbrev_np(sig);
  if (n) { snprintf(buf, sizeof buf, "SIG%s", n); return buf; }
  snprintf(buf, sizeof buf, "signal %d", sig);
  return buf;
}

static void end_text(char *b, size_t n, const rp_result *r) {
  if (!r->complete) snprintf(b, n, "none (the trace ends at seq %" PRIu64 ")", r->last_seq);
  else if (r->end_kind == HKT_END_EXIT) snprintf(b, n, "exit %" PRIu64, r->end_aux);
  else if (r->end_kind == HKT_END_SIGNAL) snprintf(b, n, "%s", sig_name((int)r->end_aux));
  else snprintf(b, n, "%s", hkt_end_name(r->end_kind));
}

static double eps(const rp_result *r) { return r->seconds > 0 ? r->events / r->seconds : 0; }

/* ---- text and JSON reports of a replay against hakmem ---- */

static void json_detections(FILE *f, const rp_result *r) {
  fputc('[', f);
  for (uint32_t i = 0; i < r->ndet; i++)
    fprintf(f, "%s{\"seq\":%" PRIu64 ",\"kind\":\"%s\",\"ptr\":\"0x%" PRIx64 "\",\"thread\":%u}", i ? "," : "",
            r->det[i].seq, hkt_detect_name(r->det[i].kind), r->det[i].ptr, r->det[i].tid);
  fputc(']', f);
}

static void json_report(FILE *f, const report_opts *o, const rp_result *r, int crash_sig, int64_t crash_after,
                        int runs, int runs_identical, int same_each) {
  int identical = !r->diverged && !r->stalled && !(crash_sig && exit_code(r, crash_sig) == EXIT_DIVERGED);
  if (runs > 1) identical = runs_identical == runs;
  fputs("{\"file\":", f);
  cli_json_str(f, o->path);
  fprintf(f, ",\"against\":\"hakmem\",\"events\":%" PRIu64 ",\"replayed\":%" PRIu64 ",\"threads\":%u", r->events,
          r->replayed, r->threads);
  fprintf(f, ",\"parent_events\":%" PRIu64, r->seq_base);
  fprintf(f, ",\"identical\":%s,\"first_divergence\":", identical ? "true" : "false");
  if (r->diverged) {
    fprintf(f, "{\"seq\":%" PRIu64 ",", r->div_exp_none ? r->div_got.seq : r->div_expected.seq);
    if (r->div_parent[0]) {
      fputs("\"parent_trace\":", f);
      cli_json_str(f, r->div_parent);
      fputc(',', f);
    }
    fputs("\"expected\":", f);
    if (r->div_exp_none) fputs("null", f); else rp_event_json(f, &r->div_expected);
    fputs(",\"got\":", f);
    if (r->div_got_none) fputs("null", f); else rp_event_json(f, &r->div_got);
    fputc('}', f);
  } else {
    fputs("null", f);
  }
  fputs(",\"detections\":", f);
  json_detections(f, r);
  fprintf(f, ",\"events_per_s\":%.0f,\"seconds\":%.6f", eps(r), r->seconds);
  fprintf(f, ",\"stalled\":%s,\"stopped_at\":", r->stalled ? "true" : "false");
  if (r->stopped) fprintf(f, "%" PRIu64, o->stop_at); else fputs("null", f);
  fprintf(f, ",\"complete\":%s,\"end\":", r->complete ? "true" : "false");
  if (r->complete) fprintf(f, "{\"how\":\"%s\",\"value\":%" PRIu64 "}", hkt_end_name(r->end_kind), r->end_aux);
  else fputs("null", f);
  fputs(",\"crash\":", f);
  if (crash_sig) fprintf(f, "{\"signal\":\"%s\",\"after_seq\":%" PRId64 "}", sig_name(crash_sig), crash_after);
  else fputs("null", f);
  fprintf(f, ",\"order\":\"%s\",\"ran_ahead\":%" PRIu64 ",\"digest\":\"0x%016" PRIx64 "\"",
          r->ahead ? "ahead" : "strict", r->ran_ahead, r->digest);
  fprintf(f, ",\"address_mode\":\"%s\",\"trace_error\":",
          r->rec_base == r->rep_base ? "identical" : "mapped");
  if (r->read_err) cli_json_str(f, r->read_msg); else fputs("null", f);
  fprintf(f, ",\"runs\":%d,\"runs_identical\":%d,\"runs_same_as_each_other\":%s}\n", runs, runs_identical,
          same_each ? "true" : "false");
}

static void text_report(FILE *f, const report_opts *o, const rp_result *r, int crash_sig, int64_t crash_after) {
  char b[512];
  fprintf(f, "hakmem replay: %s against hakmem: %" PRIu64 " events, %u threads, %.3f s (%.2f M events/s)\n",
          o->path, r->events, r->threads, r->seconds, eps(r) / 1e6);
  if (r->rec_base != r->rep_base)
    fprintf(f, "note: the recorded arena base 0x%" PRIx64 " is taken in this process; replayed at 0x%" PRIx64
               " with mapped addresses\n", r->rec_base, r->rep_base);
  if (r->seq_base)
    fprintf(f, "note: a forked child's trace: replayed after the %" PRIu64 " events of its parent's trace before "
               "the fork (its heap started as the parent's)\n", r->seq_base);
  if (r->diverged) {
    if (r->stalled) fprintf(f, "result: STALLED: the event due next never came (watchdog)\n");
    else if (r->div_parent[0])
      fprintf(f, "result: DIVERGED in the parent's part, at seq %" PRIu64 " of %s (before the fork: replay that "
                 "trace itself to see why)\n", r->div_exp_none ? r->div_got.seq : r->div_expected.seq, r->div_parent);
    else fprintf(f, "result: DIVERGED at seq %" PRIu64 "\n", r->div_exp_none ? r->div_got.seq : r->div_expected.seq);
    if (r->div_exp_none) fprintf(f, "  expected: nothing (the trace has no more events for this thread)\n");
    else { rp_event_text(b, sizeof b, &r->div_expected); fprintf(f, "  expected: seq %" PRIu64 " %s\n", r->div_expected.seq, b); }
    if (r->div_got_none) fprintf(f, "  got:      nothing\n");
    else { rp_event_text(b, sizeof b, &r->div_got); fprintf(f, "  got:      %s\n", b); }
  } else if (crash_sig) {
    fprintf(f, "result: the replay crashed with %s after seq %" PRId64 "%s\n", sig_name(crash_sig), crash_after,
            exit_code(r, crash_sig) == EXIT_REPRODUCED ? ": the recorded run ended there too (reproduced)" : "");
  } else if (r->stopped) {
    fprintf(f, "result: stopped before seq %" PRIu64 " (--stop-at); identical up to there\n", o->stop_at);
  } else {
    fprintf(f, "result: identical: every event as recorded, in the same order%s\n",
            r->rec_base == r->rep_base ? ", at the same addresses" : "");
  }
  if (r->ndet_total) {
    fprintf(f, "detections: %u\n", r->ndet_total);
    for (uint32_t i = 0; i < r->ndet; i++)
      fprintf(f, "  seq %" PRIu64 "  %s  ptr 0x%" PRIx64 "  thread %u\n", r->det[i].seq,
              hkt_detect_name(r->det[i].kind), r->det[i].ptr, r->det[i].tid);
  }
  end_text(b, sizeof b, r);
  fprintf(f, "recorded end: %s\n", b);
  if (r->read_err) fprintf(f, "note: the trace stops at an error: %s\n", r->read_msg);
  if (r->unreached)
    fprintf(f, "note: the last %" PRIu64 " events of the trace were not replayed: the call that made them "
               "is not in it (the recording stopped inside that call)\n", r->unreached);
  int crashed_run = !r->complete || r->end_kind == HKT_END_SIGNAL;
  if (crash_sig || r->stopped || (crashed_run && !r->diverged)) {
    fprintf(f, "allocator state %s:\n", r->stopped ? "before that event" : "at the last event");
    rp_dump_state(f, 20);
  }
}

/* ---- running here (the re-executed process) ---- */

static rp_result g_res;
static report_opts g_ro;
static int g_result_fd = -1;

static void on_crash(int sig) {
  int64_t after = rp_last_done_own();
  rp_result_rebase(&g_res);
  if (g_result_fd >= 0) {
    rp_result_write(g_result_fd, &g_res, sig);
  } else {
    g_res.events = g_res.last_seq + 1;
    if (g_ro.json) json_report(stdout, &g_ro, &g_res, sig, after, 1, 0, 1);
    else text_report(stdout, &g_ro, &g_res, sig, after);
    fflush(stdout);
  }
  _exit(exit_code(&g_res, sig));
}

static int run_here(const report_opts *ro, rp_mode mode, double timeout, int result_fd, int seq_fd,
                    const char *record_to) {
  rp_options o = {.path = ro->path, .mode = mode, .stop_at = ro->stop_at, .stall_s = timeout,
                  .progress = result_fd < 0 && isatty(2), .record_to = record_to};
  if (seq_fd >= 0) {
    void *m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, seq_fd, 0);
    if (m != MAP_FAILED) o.shared_seq = m;
  }
  g_ro = *ro;
  g_result_fd = result_fd;
  if (mode != RP_FUNCS) {
    /* A crash that the recording had is the bug, reproduced: report it. */
    static char altstack[1 << 16];
    stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
    sigaltstack(&ss, NULL);
    struct sigaction sa = {.sa_handler = on_crash, .sa_flags = SA_ONSTACK | SA_RESETHAND};
    int sigs[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE, SIGABRT};
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
  }
  int e = rp_run(&o, &g_res);
  rp_result_rebase(&g_res);
  if (HKT_IS_ERR(e)) {
    if (result_fd >= 0) {
      g_res.read_err = e;
      rp_result_write(result_fd, &g_res, 0);
    }
    cli_err("replay", "%s", g_res.read_msg);
    fflush(NULL);
    _exit(EXIT_ERROR);
  }
  int code = exit_code(&g_res, 0);
  if (result_fd >= 0) rp_result_write(result_fd, &g_res, 0);
  else if (ro->json) json_report(stdout, ro, &g_res, 0, -1, 1, code != EXIT_DIVERGED, 1);
  else text_report(stdout, ro, &g_res, 0, -1);
  if (g_res.read_err && result_fd < 0) cli_err("replay", "%s (replayed what was whole)", g_res.read_msg);
  /* Replay threads are parked, maybe inside the allocator: leave now. */
  fflush(NULL);
  _exit(code);
}

/* A replay for the server (rp_serve), in a fresh fork: result on stdout. */
static int serve_one(const char *path, rp_mode mode, double timeout) {
  report_opts ro = {.path = path, .against = "hakmem", .stop_at = UINT64_MAX};
  return run_here(&ro, mode, timeout, 1, -1, NULL);
}

/* ---- the user's command ---- */

/* Two runs the same: for runs that went to the end, one digest of every
 * event made; for runs that stopped at a divergence or a stall, the same
 * place, the same events there and the same detections before it (the
 * digest is no measure there: threads running ahead made some events past
 * that place, more or fewer from run to run). The fields compared are the
 * ones same() compares (engine.c): not time, caller, or a thread's OS id. */
static int same_event(const hkt_event *a, const hkt_event *b) {
  int os_tid = a->kind == HKT_EV_THREAD_START || a->kind == HKT_EV_THREAD_EXIT;
  return a->seq == b->seq && a->kind == b->kind && a->fn == b->fn && a->tid == b->tid && a->cls == b->cls &&
         a->ptr == b->ptr && a->size == b->size && (os_tid || a->aux == b->aux) && a->aux2 == b->aux2 &&
         a->aux3 == b->aux3;
}

static int same_run(const rp_result *a, const rp_result *b) {
  if (a->diverged != b->diverged) return 0;
  if (!a->diverged) return a->digest == b->digest;
  if (a->stalled != b->stalled || a->replayed != b->replayed || a->ndet_total != b->ndet_total ||
      a->ndet != b->ndet || a->div_exp_none != b->div_exp_none || a->div_got_none != b->div_got_none)
    return 0;
  for (uint32_t i = 0; i < a->ndet; i++)
    if (a->det[i].seq != b->det[i].seq || a->det[i].kind != b->det[i].kind || a->det[i].ptr != b->det[i].ptr ||
        a->det[i].tid != b->det[i].tid)
      return 0;
  return same_event(&a->div_expected, &b->div_expected) && same_event(&a->div_got, &b->div_got);
}

static int replay_repeat(const report_opts *ro, int n, double timeout) {
  rp_result first, r;
  rp_child c;
  int identical = 0, same = 1, worst = EXIT_IDENTICAL, first_bad = -1;
  char b[512];
  for (int i = 0; i < n; i++) {
    if (isatty(2) && !ro->json) fprintf(stderr, "\rhakmem replay: run %d/%d ", i + 1, n);
    if (rp_spawn(ro->path, "hakmem", NULL, timeout, NULL, &r, &c)) {
      cli_err("replay", "%s: cannot start a replay process: %s", ro->path, strerror(errno));
      return EXIT_ERROR;
    }
    if (!c.finished) {
      rp_child_message(&c, b, sizeof b);
      cli_err("replay", "%s: run %d ended without a result (%s%s%s)", ro->path, i + 1,
              WIFSIGNALED(c.status) ? sig_name(WTERMSIG(c.status)) : "exit", *b ? ": " : "", b);
      return EXIT_ERROR;
    }
    if (r.read_err == HKT_ERR_NOT_TRACE || (r.read_err && !r.events)) {
      cli_err("replay", "%s", r.read_msg);
      return EXIT_ERROR;
    }
    int code = exit_code(&r, c.crash_sig);
    if (i == 0) first = r;
    else if (!same_run(&r, &first)) same = 0;
    if (code != EXIT_DIVERGED) identical++;
    else if (first_bad < 0) first_bad = i;
    if (code == EXIT_DIVERGED || (code == EXIT_REPRODUCED && worst == EXIT_IDENTICAL)) worst = code;
    if (code == EXIT_DIVERGED && !ro->json) {
      fprintf(stdout, "run %d: %s at seq %" PRIu64 "\n", i + 1, r.stalled ? "stalled" : "diverged",
              r.div_exp_none ? r.div_got.seq : r.div_expected.seq);
    }
  }
  if (isatty(2) && !ro->json) fputs("\r\033[K", stderr);
  if (ro->json) {
    json_report(stdout, ro, &first, 0, -1, n, identical, same);
  } else {
    fprintf(stdout, "hakmem replay: %s against hakmem, %d runs: %d identical to the recording; runs %s each other\n",
            ro->path, n, identical, same ? "identical to" : "DIFFER from");
    fprintf(stdout, "%" PRIu64 " events, %u threads, %.2f M events/s (first run)\n", first.events, first.threads,
            eps(&first) / 1e6);
    if (first.ndet_total) {
      fprintf(stdout, "detections (first run): %u\n", first.ndet_total);
      for (uint32_t i = 0; i < first.ndet; i++)
        fprintf(stdout, "  seq %" PRIu64 "  %s  ptr 0x%" PRIx64 "  thread %u\n", first.det[i].seq,
                hkt_detect_name(first.det[i].kind), first.det[i].ptr, first.det[i].tid);
    }
  }
  if (!same && worst == EXIT_IDENTICAL) worst = EXIT_DIVERGED;
  return worst;
}

/* The event with this seq, and the trace's first detection (for a report
 * against another allocator). */
static void find_events(const char *path, uint64_t seq, hkt_event *at, int *have_at, hkt_event *det, int *have_det) {
  hkt_reader *rd;
  hkt_event ev;
  *have_at = *have_det = 0;
  if (HKT_IS_ERR(hkt_reader_open(&rd, path))) { if (rd) hkt_reader_close(rd); return; }
  while (hkt_reader_next(rd, &ev) == 1) {
    if (ev.seq == seq) { *at = ev; *have_at = 1; }
    if (ev.kind == HKT_EV_DETECTION && !*have_det) { *det = ev; *have_det = 1; }
    if (*have_det && (*have_at || seq == UINT64_MAX || ev.seq > seq)) break;
  }
  hkt_reader_close(rd);
}

static int replay_against(const report_opts *ro, const char *preload, double timeout) {
  rp_result r;
  rp_child c;
  char msg[512], b[512];
  if (rp_spawn(ro->path, "funcs", preload, timeout, NULL, &r, &c)) {
    cli_err("replay", "%s: cannot start a replay process: %s", ro->path, strerror(errno));
    return EXIT_ERROR;
  }
  rp_child_message(&c, msg, sizeof msg);
  const char *outcome;
  int code, sig = WIFSIGNALED(c.status) ? WTERMSIG(c.status) : 0;
  if (c.finished && r.read_err && !r.events) { cli_err("replay", "%s", r.read_msg); return EXIT_ERROR; }
  if (sig == SIGABRT) { outcome = "detected"; code = EXIT_REPRODUCED; }
  else if (sig) { outcome = "crashed"; code = EXIT_DIVERGED; }
  else if (!c.finished) {
    cli_err("replay", "%s: the replay against %s ended without a result (exit %d)%s%s", ro->path, ro->against,
            WEXITSTATUS(c.status), *msg ? ": " : "", msg);
    return EXIT_ERROR;
  } else if (r.stalled) { outcome = "stalled"; code = EXIT_DIVERGED; }
  else { outcome = "clean"; code = EXIT_IDENTICAL; }
  hkt_event at, det;
  int have_at, have_det;
  find_events(ro->path, sig ? c.at_seq : UINT64_MAX, &at, &have_at, &det, &have_det);
  if (ro->json) {
    fputs("{\"file\":", stdout);
    cli_json_str(stdout, ro->path);
    fputs(",\"against\":", stdout);
    cli_json_str(stdout, ro->against);
    fprintf(stdout, ",\"events\":%" PRIu64 ",\"threads\":%u,\"identical\":null,\"first_divergence\":null,"
                    "\"outcome\":\"%s\",\"signal\":", r.events, r.threads, outcome);
    if (sig) fprintf(stdout, "\"%s\"", sig_name(sig)); else fputs("null", stdout);
    fputs(",\"at\":", stdout);
    if (sig && have_at) rp_event_json(stdout, &at); else fputs("null", stdout);
    fputs(",\"message\":", stdout);
    if (sig && *msg) cli_json_str(stdout, msg); else fputs("null", stdout);
    fputs(",\"recorded_detection\":", stdout);
    if (have_det) rp_event_json(stdout, &det); else fputs("null", stdout);
    fputs(",\"detections\":[]", stdout);
    fprintf(stdout, ",\"events_per_s\":%.0f}\n", c.finished ? eps(&r) : 0.0);
    return code;
  }
  fprintf(stdout, "hakmem replay: %s against %s\n", ro->path, ro->against);
  if (!sig) {
    fprintf(stdout, "outcome: %s: every call made, in recorded order (%" PRIu64 " events, %u threads, %.2f M events/s)\n",
            outcome, r.events, r.threads, eps(&r) / 1e6);
  } else {
    fprintf(stdout, "outcome: %s: %s", outcome, sig_name(sig));
    if (c.at_seq != UINT64_MAX) fprintf(stdout, " at seq %" PRIu64, c.at_seq);
    fputc('\n', stdout);
    if (have_at) { rp_event_text(b, sizeof b, &at); fprintf(stdout, "  call: %s\n", b); }
    if (*msg) fprintf(stdout, "  its message: %s\n", msg);
  }
  if (have_det) {
    rp_event_text(b, sizeof b, &det);
    fprintf(stdout, "recorded on hakmem: detection at seq %" PRIu64 ": %s\n", det.seq, b);
  } else {
    fprintf(stdout, "recorded on hakmem: no detection\n");
  }
  return code;
}

int cmd_replay(int argc, char **argv) {
  static const struct option opts[] = {
    {"against", required_argument, NULL, 'a'}, {"repeat", required_argument, NULL, 'n'},
    {"json", no_argument, NULL, 'j'}, {"stop-at", required_argument, NULL, 's'},
    {"timeout", required_argument, NULL, 't'}, {"run", required_argument, NULL, 'R'},
    {"result-fd", required_argument, NULL, 'F'}, {"seq-fd", required_argument, NULL, 'S'},
    {"record-to", required_argument, NULL, 'W'}, {"serve", required_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
  report_opts ro = {.against = "hakmem", .stop_at = UINT64_MAX};
  uint64_t repeat = 1, v;
  double timeout = 10;
  const char *run = NULL, *record_to = NULL, *serve = NULL;
  int result_fd = -1, seq_fd = -1, c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":jh", opts, NULL)) != -1) {
    switch (c) {
    case 'a': ro.against = optarg; break;
    case 'n':
      if (cli_u64(optarg, &repeat) || repeat < 1 || repeat > 1000000)
        return cli_usage("replay", "--repeat needs a number from 1 to 1000000");
      break;
    case 'j': ro.json = 1; break;
    case 's': if (cli_u64(optarg, &ro.stop_at)) return cli_usage("replay", "--stop-at needs a sequence number"); break;
    case 't': {
      char *end;
      timeout = strtod(optarg, &end);
      if (*end || !(timeout > 0)) return cli_usage("replay", "--timeout needs seconds > 0");
      break;
    }
    case 'R': run = optarg; break;
    case 'W': record_to = optarg; break;
    case 'V': serve = optarg; break;
    case 'F': if (cli_u64(optarg, &v)) return cli_usage("replay", "bad --result-fd"); result_fd = (int)v; break;
    case 'S': if (cli_u64(optarg, &v)) return cli_usage("replay", "bad --seq-fd"); seq_fd = (int)v; break;
    case 'h': return 0;
    default: return cli_bad_option("replay", c, argv, optind);
    }
  }
  if (optind != argc - 1) return cli_usage("replay", optind < argc ? "one trace file, please" : "which trace file?");
  ro.path = argv[optind];

  if (serve) {   /* replays on request, for minimize (spawn.c) */
    if (strcmp(serve, "lenient") && strcmp(serve, "hakmem")) return cli_usage("replay", "--serve takes lenient or hakmem");
    return rp_serve(!strcmp(serve, "lenient") ? RP_LENIENT : RP_HAKMEM, timeout, serve_one);
  }
  if (run) {   /* the replay process itself */
    rp_mode m = !strcmp(run, "hakmem") ? RP_HAKMEM : !strcmp(run, "lenient") ? RP_LENIENT
              : !strcmp(run, "funcs") ? RP_FUNCS : (rp_mode)-1;
    if ((int)m < 0) return cli_usage("replay", "--run takes hakmem, lenient or funcs");
    return run_here(&ro, m, timeout, result_fd, seq_fd, record_to);
  }

  hkt_reader *rd;
  if (HKT_IS_ERR(cli_open_trace("replay", ro.path, &rd))) return EXIT_ERROR;
  const hkt_header *h = hkt_reader_header(rd);
  if (h->forked) {   /* its parents' traces are needed too: say so here, once */
    rp_chain ch;
    char why[512];
    if (rp_chain_open(&ch, ro.path, why, sizeof why)) {
      cli_err("replay", "%s", why);
      hkt_reader_close(rd);
      return EXIT_ERROR;
    }
    rp_chain_close(&ch);
  }

  if (strcmp(ro.against, "hakmem")) {
    hkt_reader_close(rd);
    const char *preload = "";
    if (strcmp(ro.against, "system")) {
      struct stat sb;
      if (stat(ro.against, &sb) || !S_ISREG(sb.st_mode)) {
        cli_err("replay", "%s: --against takes hakmem, system or the path of a preloadable library", ro.against);
        return EXIT_ERROR;
      }
      preload = ro.against;
    }
    if (repeat > 1 || ro.stop_at != UINT64_MAX)
      return cli_usage("replay", "--repeat and --stop-at go with --against hakmem only");
    for (char **e = environ; *e;) {   /* nothing of hakmem's own in the child */
      if (!strncmp(*e, "HAKMEM_", 7)) {
        char name[256];
        size_t n = strcspn(*e, "=");
        snprintf(name, sizeof name, "%.*s", (int)n, *e);
        unsetenv(name);
      } else {
        e++;
      }
    }
    return replay_against(&ro, preload, timeout);
  }

  rp_env_for_hakmem(h);
  hkt_reader_close(rd);
  if (repeat > 1) return replay_repeat(&ro, (int)repeat, timeout);

  /* One replay: this process becomes it, same pid (debuggers follow). */
  char exe[4096], tmo[32], stop[32];
  ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (k <= 0) { cli_err("replay", "cannot find my own executable: %s", strerror(errno)); return EXIT_ERROR; }
  exe[k] = 0;
  snprintf(tmo, sizeof tmo, "%g", timeout);
  snprintf(stop, sizeof stop, "%" PRIu64, ro.stop_at);
  char *av[12];
  int n = 0;
  av[n++] = exe; av[n++] = "replay"; av[n++] = (char *)ro.path; av[n++] = "--run"; av[n++] = "hakmem";
  av[n++] = "--timeout"; av[n++] = tmo;
  if (ro.json) av[n++] = "--json";
  if (ro.stop_at != UINT64_MAX) { av[n++] = "--stop-at"; av[n++] = stop; }
  av[n] = NULL;
  fflush(NULL);
  execv(exe, av);
  cli_err("replay", "cannot re-execute %s: %s", exe, strerror(errno));
  return EXIT_ERROR;
}
