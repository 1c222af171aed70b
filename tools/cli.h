/* cli.h — helpers shared by the `hakmem` commands (header-only, so test
 * binaries that link the command objects without tools/main.o get them too).
 *
 *  - errors:   cli_err("stats", "%s: not a trace", path) prints
 *              "hakmem stats: FILE: not a trace" on stderr, one line;
 *  - options:  cli_u64() parses decimal or 0x-hex numbers strictly;
 *              CLI_HELP_OPT / cli_help_requested() for `CMD --help`;
 *  - JSON:     cli_json_str() writes a JSON string literal, escaping
 *              control characters and invalid UTF-8 bytes.
 *
 * Exit codes every trace command follows (docs/cli.md):
 *   0  success;  1  the trace was read but has problems (cut, corrupt, or,
 *   for verify, inconsistent);  2  usage error or unreadable input. */
#ifndef HAKMEM_CLI_H
#define HAKMEM_CLI_H

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hakmem/trace.h"

enum { CLI_EXIT_OK = 0, CLI_EXIT_PROBLEM = 1, CLI_EXIT_USAGE = 2 };

/* One line on stderr: "hakmem CMD: <message>". */
static inline __attribute__((format(printf, 2, 3)))
void cli_err(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "hakmem %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

/* Help texts (help.c): one entry per command, NULL-terminated. */
typedef struct cli_command_help {
  const char *name, *summary, *help;
} cli_command_help;
extern const cli_command_help cli_commands[];
const cli_command_help *cli_find_help(const char *name);
int cli_help(const char *name);   /* prints CMD's help on stdout: CLI_EXIT_OK */

/* A usage error: one line, a pointer to the help, exit code 2. */
static inline int cli_usage(const char *cmd, const char *what) {
  fprintf(stderr, "hakmem %s: %s (see 'hakmem help %s')\n", cmd, what, cmd);
  return CLI_EXIT_USAGE;
}

/* After getopt_long (optstring starting with ':') returned '?' or ':' for
 * argv[optind - 1]: one line naming the option, exit code 2. */
static inline int cli_bad_option(const char *cmd, int c, char **argv, int optind_now) {
  char what[160];
  const char *arg = argv[optind_now - 1];
  if (c == ':') snprintf(what, sizeof what, "option '%s' needs a value", arg);
  else snprintf(what, sizeof what, "unknown option '%s'", arg);
  return cli_usage(cmd, what);
}

/* Strict unsigned parse: decimal, or hex with 0x; the whole string must be
 * the number. Returns 0 or -1. */
static inline int cli_u64(const char *s, uint64_t *out) {
  if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return -1;
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || !end || *end) return -1;
  *out = v;
  return 0;
}

/* True if argv (after the command name) asks for help, before any "--". */
static inline int cli_help_requested(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--")) return 0;
    if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return 1;
  }
  return 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), 0 if invalid. */
static inline int cli_utf8_len(const unsigned char *s) {
  unsigned c = s[0];
  int n;
  uint32_t cp;
  if (c < 0x80) return 1;
  if (c >= 0xc2 && c <= 0xdf) { n = 2; cp = c & 0x1f; }
  else if (c >= 0xe0 && c <= 0xef) { n = 3; cp = c & 0x0f; }
  else if (c >= 0xf0 && c <= 0xf4) { n = 4; cp = c & 0x07; }
  else return 0;
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;   /* also stops at the NUL */
    cp = (cp << 6) | (s[i] & 0x3f);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return n;
}

/* A JSON string literal for s (NULL gives null). Bytes that are not valid
 * UTF-8 are written as \u00XX so the output is always valid JSON. */
static inline void cli_json_str(FILE *f, const char *s) {
  if (!s) { fputs("null", f); return; }
  const unsigned char *p = (const unsigned char *)s;
  fputc('"', f);
  while (*p) {
    unsigned c = *p;
    int n = cli_utf8_len(p);
    if (c == '"' || c == '\\') { fputc('\\', f); fputc((int)c, f); p++; }
    else if (c == '\n') { fputs("\\n", f); p++; }
    else if (c == '\t') { fputs("\\t", f); p++; }
    else if (c == '\r') { fputs("\\r", f); p++; }
    else if (c < 0x20 || c == 0x7f || n == 0) { fprintf(f, "\\u%04x", c); p++; }
    else { fwrite(p, 1, (size_t)n, f); p += n; }
  }
  fputc('"', f);
}

/* A string on one text line: control characters as \n, \t, \xNN, so an
 * event stays one line whatever its label holds. */
static inline void cli_text_str(FILE *f, const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
    if (*p == '\n') fputs("\\n", f);
    else if (*p == '\t') fputs("\\t", f);
    else if (*p < 0x20 || *p == 0x7f) fprintf(f, "\\x%02x", *p);
    else fputc(*p, f);
  }
}

/* A 64-bit address as a JSON string "0x..." (JSON numbers lose bits past 2^53). */
static inline void cli_json_addr(FILE *f, uint64_t a) {
  fprintf(f, "\"0x%llx\"", (unsigned long long)a);
}

/* After the output is written: 0, or one line saying why stdout failed
 * (a full disk) and the exit code for it. */
static inline int cli_flush_stdout(const char *cmd) {
  if (fflush(stdout) == 0 && !ferror(stdout)) return 0;
  cli_err(cmd, "standard output: %s", strerror(errno ? errno : EIO));
  return CLI_EXIT_USAGE;
}

/* Open a trace or say why not (one line, naming the file). */
static inline int cli_open_trace(const char *cmd, const char *path, hkt_reader **r) {
  struct stat sb;
  *r = NULL;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    cli_err(cmd, "%s: is a directory, not a trace", path);
    return HKT_ERR_NOT_TRACE;
  }
  errno = 0;
  int e = hkt_reader_open(r, path);
  if (HKT_IS_ERR(e)) {
    const char *msg = hkt_reader_errmsg(*r);   /* NULL: this thread's last failed open */
    if (msg && *msg) cli_err(cmd, "%s", msg);
    else if (e == HKT_ERR_IO && errno) cli_err(cmd, "%s: %s", path, strerror(errno));
    else cli_err(cmd, "%s: %s", path, hkt_strerror(e));
    if (*r) hkt_reader_close(*r);
    *r = NULL;
    return e;
  }
  return 0;
}

#endif /* HAKMEM_CLI_H */
