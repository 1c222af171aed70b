/* cmd_analyze.c — `hakmem analyze FILE [--format text|json|html|perfetto] [-o OUT]`
 *
 * One pass over the trace into the lifecycle model (collect.c), then one
 * report. A cut trace is analyzed up to where it ends and the report says
 * so (exit 1); an unreadable one is one line on stderr (exit 2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "analyze.h"
#include "../tools/cli.h"

static const char CMD[] = "analyze";

static int term_width(FILE *f) {
  struct winsize ws;
  if (isatty(fileno(f)) && ioctl(fileno(f), TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 40) return ws.ws_col;
  return 100;
}

int cmd_analyze(int argc, char **argv) {
  if (cli_help_requested(argc, argv)) return cli_help(CMD);
  const char *path = NULL, *out_path = NULL, *format = "text";
  int stable = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--format") || !strcmp(a, "-f")) {
      if (++i >= argc) return cli_usage(CMD, "--format needs a value");
      format = argv[i];
    } else if (!strncmp(a, "--format=", 9)) {
      format = a + 9;
    } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      if (++i >= argc) return cli_usage(CMD, "-o needs a file name");
      out_path = argv[i];
    } else if (!strcmp(a, "--stable")) {
      stable = 1;
    } else if (a[0] == '-' && a[1]) {
      char msg[256];
      snprintf(msg, sizeof msg, "unknown option '%s'", a);
      return cli_usage(CMD, msg);
    } else if (!path) {
      path = a;
    } else {
      return cli_usage(CMD, "more than one trace given");
    }
  }
  if (!path) return cli_usage(CMD, "no trace given");
  int (*writer)(const hka_state *, hka_out *);
  if (!strcmp(format, "text")) writer = hka_report_text;
  else if (!strcmp(format, "json")) writer = hka_report_json;
  else if (!strcmp(format, "html")) writer = hka_report_html;
  else if (!strcmp(format, "perfetto")) writer = hka_report_perfetto;
  else {
    char msg[256];
    snprintf(msg, sizeof msg, "unknown format '%s' (text, json, html or perfetto)", format);
    return cli_usage(CMD, msg);
  }
  if (stable && writer != hka_report_text && writer != hka_report_json)
    return cli_usage(CMD, "--stable is for the text and json formats");

  struct stat in_st, out_st;
  if (out_path && stat(path, &in_st) == 0 && stat(out_path, &out_st) == 0 &&
      in_st.st_dev == out_st.st_dev && in_st.st_ino == out_st.st_ino) {
    cli_err(CMD, "%s: is the trace itself; not overwriting it", out_path);
    return CLI_EXIT_USAGE;
  }
  hkt_reader *r;
  if (cli_open_trace(CMD, path, &r)) return CLI_EXIT_USAGE;
  hka_state *s = malloc(sizeof *s);
  if (!s || HKT_IS_ERR(hka_init(s, path, hkt_reader_header(r)))) {
    cli_err(CMD, "%s: out of memory", path);
    if (s) hka_free(s);
    free(s);
    hkt_reader_close(r);
    return CLI_EXIT_PROBLEM;
  }

  /* a forked child: its parent's heap at the fork first, from the parent's
   * trace (and its modules, when the child's header has none) */
  int err = hka_inherit(s), rc = 0;
  /* symbolization starts up while the pass runs (libc's debug info alone
   * is ~55 ms of inflating) */
  hka_symbolizer *z = hka_sym_start(s);
  if (!HKT_IS_ERR(err)) rc = hka_pass(s, r, isatty(2), &err);
  if (HKT_IS_ERR(err)) {
    cli_err(CMD, "%s: %s at seq %llu", path, hkt_strerror(err), (unsigned long long)s->last_seq);
    hka_sym_close(z);
    hka_free(s);
    free(s);
    hkt_reader_close(r);
    return CLI_EXIT_PROBLEM;
  }
  if (HKT_IS_ERR(hka_finish(s, r, rc))) {
    cli_err(CMD, "%s: out of memory", path);
    hka_sym_close(z);
    hka_free(s);
    free(s);
    hkt_reader_close(r);
    return CLI_EXIT_PROBLEM;
  }

  hka_sym_ready(z, s);
  hka_leaks_symbolize(s, z);
  FILE *f = stdout;
  if (out_path && !(f = fopen(out_path, "w"))) {
    cli_err(CMD, "%s: cannot write: %s", out_path, strerror(errno));
    rc = HKT_ERR_IO;
  } else {
    /* --stable: a fixed width too, so the text does not depend on the terminal */
    hka_out o = {.f = f, .r = r, .width = stable ? 100 : term_width(f), .sym = z, .stable = stable};
    int werr = writer(s, &o);
    if ((f != stdout ? fclose(f) : fflush(f)) != 0 || HKT_IS_ERR(werr)) {
      cli_err(CMD, "%s: write failed: %s", out_path ? out_path : "standard output", strerror(errno));
      rc = HKT_ERR_IO;
    }
  }
  int code = rc == HKT_ERR_IO ? CLI_EXIT_PROBLEM : CLI_EXIT_OK;
  if (s->read_error) {
    cli_err(CMD, "%s", s->read_errmsg);
    code = CLI_EXIT_PROBLEM;
  } else if (!s->complete) {
    cli_err(CMD, "%s: the trace has no end frame; analyzed up to seq %llu", path,
            (unsigned long long)s->last_seq);
    code = CLI_EXIT_PROBLEM;
  }
  hka_sym_close(z);
  hka_free(s);
  free(s);
  hkt_reader_close(r);
  return code;
}
