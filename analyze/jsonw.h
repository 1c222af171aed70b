/* jsonw.h — a minimal streaming JSON writer for the reports: pretty at the
 * outer levels, one line per object from jw_open_compact down. */
#ifndef HAKMEM_ANALYZE_JSONW_H
#define HAKMEM_ANALYZE_JSONW_H

#include <stdint.h>
#include <stdio.h>

#include "../tools/cli.h"

#define JW_MAX_DEPTH 32

typedef struct jw {
  FILE *f;
  int depth;
  int compact_from;                 /* levels deeper than this stay on one line */
  unsigned char first[JW_MAX_DEPTH];
} jw;

static inline void jw_init(jw *j, FILE *f) {
  j->f = f;
  j->depth = 0;
  j->compact_from = JW_MAX_DEPTH;
  j->first[0] = 1;
}

void jw_key(jw *j, const char *key);
void jw_open(jw *j, const char *key, char c);          /* '{' or '[' */
void jw_open_compact(jw *j, const char *key, char c);
void jw_close(jw *j, char c);                          /* '}' or ']' */
void jw_u64(jw *j, const char *key, uint64_t v);
void jw_i64(jw *j, const char *key, int64_t v);
void jw_dbl(jw *j, const char *key, double v);
void jw_str(jw *j, const char *key, const char *s);
void jw_addr(jw *j, const char *key, uint64_t a);
void jw_null(jw *j, const char *key);
void jw_bool(jw *j, const char *key, int v);
void jw_opt(jw *j, const char *key, uint64_t v, uint64_t none);

#endif
