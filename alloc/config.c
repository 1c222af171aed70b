/* config.c — HAKMEM_* settings, read once at init.
 *
 * Runs inside the process's first malloc: getenv and our own parsers only,
 * nothing that allocates. A malformed value is reported in one line naming
 * the variable and ignored (the default stays). docs/environment.md lists
 * every variable; keep the two in step. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

/* Where recording puts the arena when HAKMEM_ARENA_BASE does not say:
 * fixed, so that replay maps the very same addresses. 16 TiB is far from
 * where Linux places executables, the brk heap, mmaps and stacks. */
#define HAK_RECORD_BASE 0x100000000000ull

hak_config _hak_cfg = {
  .arena_reserve = 32ull << 30,
  .ss_cache = 2,
  .cache_cap_scale = 100,
  .quarantine = 1ull << 20,
};

uint64_t _hak_parse_u64(const char *s, int *ok) {
  uint64_t v = 0;
  int base = 10, any = 0;
  *ok = 0;
  if (!s) return 0;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) { base = 16; s += 2; }
  for (;; s++) {
    unsigned d;
    if (*s >= '0' && *s <= '9') d = (unsigned)(*s - '0');
    else if (base == 16 && *s >= 'a' && *s <= 'f') d = (unsigned)(*s - 'a' + 10);
    else if (base == 16 && *s >= 'A' && *s <= 'F') d = (unsigned)(*s - 'A' + 10);
    else break;
    if (v > (UINT64_MAX - d) / (uint64_t)base) return 0;   /* overflow */
    v = v * (uint64_t)base + d;
    any = 1;
  }
  if (!any) return 0;
  unsigned shift = 0;
  if (base == 10) {
    if (*s == 'k' || *s == 'K') shift = 10;
    else if (*s == 'm' || *s == 'M') shift = 20;
    else if (*s == 'g' || *s == 'G') shift = 30;
    if (shift) { s++; if (v > (UINT64_MAX >> shift)) return 0; v <<= shift; }
  }
  if (*s != '\0') return 0;
  *ok = 1;
  return v;
}

static void bad(const char *name, const char *val, const char *why) {
  _hak_msg("%s=%s: %s; ignored", name, val, why);
}

/* Read NAME as an integer in [lo, hi]; keep *out on absence or error. */
static void read_u64(const char *name, uint64_t lo, uint64_t hi, uint64_t *out) {
  const char *s = getenv(name);
  if (!s) return;
  int ok;
  uint64_t v = _hak_parse_u64(s, &ok);
  if (!ok) { bad(name, s, "not a number"); return; }
  if (v < lo || v > hi) { bad(name, s, "out of range"); return; }
  *out = v;
}

static int read_int(const char *name, int lo, int hi, int dflt) {
  uint64_t v = (uint64_t)dflt;
  read_u64(name, (uint64_t)lo, (uint64_t)hi, &v);
  return (int)v;
}

void _hak_config_read(void) {
  hak_config *c = &_hak_cfg;
  uint64_t v;

  c->trace = getenv("HAKMEM_TRACE");
  if (c->trace && !*c->trace) c->trace = NULL;

  v = 0;
  read_u64("HAKMEM_ARENA_BASE", 0, 0x7fffffffffffull, &v);
  if (v & ((1ull << HAK_SS_LG_MID) - 1)) {
    _hak_msg("HAKMEM_ARENA_BASE=%s: not 2 MiB aligned; ignored", getenv("HAKMEM_ARENA_BASE"));
    v = 0;
  }
  /* Recording fixes the arena, through LTTng as well. */
  c->lttng = read_int("HAKMEM_LTTNG", 0, 1, 0);
  c->arena_base = v ? v : (c->trace || c->lttng ? HAK_RECORD_BASE : 0);

  v = c->arena_reserve;
  read_u64("HAKMEM_ARENA_RESERVE", 1ull << 30, 1ull << 42, &v);
  c->arena_reserve = v & ~((1ull << HAK_SS_LG_MID) - 1);

  c->stats = read_int("HAKMEM_STATS", 0, 1, 0);
  c->debug = read_int("HAKMEM_DEBUG", 0, 3, 0);
  read_u64("HAKMEM_QUARANTINE", 0, 1ull << 40, &c->quarantine);
  _hak_inject_parse(getenv("HAKMEM_INJECT"));
  c->ss_cache = (uint32_t)read_int("HAKMEM_SS_CACHE", 0, 1024, (int)c->ss_cache);
  c->cache_cap_scale = (uint32_t)read_int("HAKMEM_TCACHE", 1, 400, (int)c->cache_cap_scale);

  const char *oe = getenv("HAKMEM_ON_ERROR");
  if (oe) {
    if (!strcmp(oe, "continue")) c->on_error_continue = 1;
    else if (!strcmp(oe, "abort")) c->on_error_continue = 0;
    else bad("HAKMEM_ON_ERROR", oe, "expected abort or continue");
  }
}

/* "NAME=VALUE\n" for every setting in force: the trace header carries it so
 * that replay runs with the same configuration. */
size_t _hak_config_describe(char *buf, size_t n) {
  const hak_config *c = &_hak_cfg;
  char inj[64];
  _hak_inject_describe(inj, sizeof inj);
  int r = _hak_fmt(buf, n,
      "HAKMEM_ARENA_BASE=0x%llx\nHAKMEM_ARENA_RESERVE=%llu\nHAKMEM_DEBUG=%d\n"
      "HAKMEM_ON_ERROR=%s\nHAKMEM_SS_CACHE=%u\nHAKMEM_TCACHE=%u\n"
      "HAKMEM_QUARANTINE=%llu\nHAKMEM_INJECT=%s\n",
      (unsigned long long)(uint64_t)(uintptr_t)_hak_arena.ss_base,
      (unsigned long long)c->arena_reserve, c->debug,
      c->on_error_continue ? "continue" : "abort", c->ss_cache, c->cache_cap_scale,
      (unsigned long long)c->quarantine, inj);
  return r < 0 ? 0 : ((size_t)r < n ? (size_t)r : n - 1);
}
