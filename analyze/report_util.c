/* report_util.c — small formatting helpers shared by the report writers. */
#include <inttypes.h>
#include <string.h>

#include "analyze.h"
#include "jsonw.h"

const char *hka_bytes(uint64_t b, char *buf, size_t n) {
  static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = (double)b;
  int u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; u++; }
  if (u == 0) snprintf(buf, n, "%" PRIu64 " B", b);
  else snprintf(buf, n, "%.1f %s", v, unit[u]);
  return buf;
}

const char *hka_secs(uint64_t ns, char *buf, size_t n) {
  if (ns < 1000000ULL) snprintf(buf, n, "%.1f us", (double)ns / 1e3);
  else if (ns < 1000000000ULL) snprintf(buf, n, "%.3f ms", (double)ns / 1e6);
  else snprintf(buf, n, "%.3f s", (double)ns / 1e9);
  return buf;
}

const char *hka_hold_name(uint32_t kind) {
  switch (kind) {
  case HKA_HOLD_LIVE: return "live";
  case HKA_HOLD_CACHE: return "cache";
  case HKA_HOLD_REMOTE: return "remote_queue";
  default: return "?";
  }
}

uint32_t hka_stack_skip(hka_symbolizer *z, const uint64_t *frames, uint32_t n) {
  uint32_t k = 0;
  for (; k + 1 < n; k++) {
    hka_sym sym;
    hka_sym_lookup(z, frames[k], &sym);
    if (!sym.module || strncmp(sym.module, "libhakmem", 9)) break;
  }
  return k;
}

const char *hka_base_name(const char *path) {
  if (!path) return NULL;
  const char *s = strrchr(path, '/');
  return s ? s + 1 : path;
}

const char *hka_stable_cmd(const char *cmd, char *buf, size_t n) {
  if (!cmd) return NULL;
  size_t prog = strcspn(cmd, " ");
  const char *p = cmd;
  for (const char *q = cmd; q < cmd + prog; q++) if (*q == '/') p = q + 1;
  snprintf(buf, n, "%s", p);
  return buf;
}

int hka_ss_bad(const hka_ss *ss) {
  return ss->detections || ss->invariant_seq != HKA_NONE ||
         (ss->unreg_seq != HKA_NONE && (ss->live_at_unreg || ss->reported_live));
}

/* ---- JSON writer -------------------------------------------------------- */

static void jw_indent(jw *j) {
  if (j->depth <= j->compact_from) {
    fputc('\n', j->f);
    for (int i = 0; i < j->depth; i++) fputs("  ", j->f);
  } else if (!j->first[j->depth]) {
    fputc(' ', j->f);
  }
}

void jw_key(jw *j, const char *key) {
  if (!j->first[j->depth]) fputc(',', j->f);
  if (j->depth) jw_indent(j);
  j->first[j->depth] = 0;
  if (key) { cli_json_str(j->f, key); fputs(": ", j->f); }
}

void jw_open(jw *j, const char *key, char c) {
  jw_key(j, key);
  fputc(c, j->f);
  if (j->depth < JW_MAX_DEPTH - 1) j->depth++;
  j->first[j->depth] = 1;
}

void jw_open_compact(jw *j, const char *key, char c) {
  jw_open(j, key, c);
  if (j->compact_from > j->depth - 1) j->compact_from = j->depth - 1;
}

void jw_close(jw *j, char c) {
  int was_empty = j->first[j->depth], inner = j->depth;
  j->depth--;
  if (!was_empty && inner <= j->compact_from) {
    fputc('\n', j->f);
    for (int i = 0; i < j->depth; i++) fputs("  ", j->f);
  }
  if (j->compact_from >= j->depth) j->compact_from = JW_MAX_DEPTH;
  fputc(c, j->f);
  if (!j->depth) fputc('\n', j->f);
}

void jw_u64(jw *j, const char *key, uint64_t v) { jw_key(j, key); fprintf(j->f, "%" PRIu64, v); }
void jw_i64(jw *j, const char *key, int64_t v) { jw_key(j, key); fprintf(j->f, "%" PRId64, v); }
void jw_dbl(jw *j, const char *key, double v) { jw_key(j, key); fprintf(j->f, "%.3f", v); }
void jw_str(jw *j, const char *key, const char *s) { jw_key(j, key); cli_json_str(j->f, s); }
void jw_addr(jw *j, const char *key, uint64_t a) { jw_key(j, key); cli_json_addr(j->f, a); }
void jw_null(jw *j, const char *key) { jw_key(j, key); fputs("null", j->f); }
void jw_bool(jw *j, const char *key, int v) { jw_key(j, key); fputs(v ? "true" : "false", j->f); }
/* a seq or thread that may be absent */
void jw_opt(jw *j, const char *key, uint64_t v, uint64_t none) {
  if (v == none) jw_null(j, key); else jw_u64(j, key, v);
}
