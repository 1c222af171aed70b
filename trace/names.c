/* names.c — the names of kinds, entry points, detections and errors, as
 * every tool prints them and `hakmem dump --json` writes them. */
#include <string.h>
#include "hkt_internal.h"

static const char *const kind_names[HKT_EV__COUNT] = {
  [HKT_EV_NONE] = "none",
  [HKT_EV_MALLOC] = "malloc",
  [HKT_EV_CALLOC] = "calloc",
  [HKT_EV_REALLOC] = "realloc",
  [HKT_EV_ALIGNED] = "aligned",
  [HKT_EV_FREE] = "free",
  [HKT_EV_THREAD_START] = "thread_start",
  [HKT_EV_THREAD_EXIT] = "thread_exit",
  [HKT_EV_SS_REGISTER] = "ss_register",
  [HKT_EV_SS_UNREGISTER] = "ss_unregister",
  [HKT_EV_REMOTE_PUSH] = "remote_push",
  [HKT_EV_REMOTE_DRAIN] = "remote_drain",
  [HKT_EV_CACHE_REFILL] = "cache_refill",
  [HKT_EV_CACHE_FLUSH] = "cache_flush",
  [HKT_EV_SS_ADOPT] = "ss_adopt",
  [HKT_EV_SS_ABANDON] = "ss_abandon",
  [HKT_EV_LARGE_MAP] = "large_map",
  [HKT_EV_LARGE_UNMAP] = "large_unmap",
  [HKT_EV_MODULE_LOAD] = "module_load",
  [HKT_EV_MARK] = "mark",
  [HKT_EV_DETECTION] = "detection",
  [HKT_EV_END] = "end",
  [HKT_EV_SS_EMPTY] = "ss_empty",
  [HKT_EV_FORK] = "fork",
};

const char *hkt_kind_name(unsigned kind) {
  return kind < HKT_EV__COUNT && kind_names[kind] ? kind_names[kind] : "unknown";
}

int hkt_kind_from_name(const char *name) {
  if (!name) return -1;
  for (unsigned k = 0; k < HKT_EV__COUNT; k++)
    if (kind_names[k] && !strcmp(kind_names[k], name)) return (int)k;
  return -1;
}

static const char *const detect_names[HKT_DET__COUNT] = {
  [0] = "none",
  [HKT_DET_INVALID_FREE] = "invalid_free",
  [HKT_DET_INTERIOR_FREE] = "interior_free",
  [HKT_DET_DOUBLE_FREE] = "double_free",
  [HKT_DET_STALE_FREE] = "stale_free",
  [HKT_DET_CANARY] = "canary",
  [HKT_DET_POISON] = "poison",
  [HKT_DET_FREELIST] = "freelist",
  [HKT_DET_SS_INVARIANT] = "ss_invariant",
};

const char *hkt_detect_name(unsigned det) {
  return det < HKT_DET__COUNT && detect_names[det] ? detect_names[det] : "unknown";
}

static const char *const fn_names[] = {
  [HKT_FN_NONE] = "none",
  [HKT_FN_POSIX_MEMALIGN] = "posix_memalign",
  [HKT_FN_ALIGNED_ALLOC] = "aligned_alloc",
  [HKT_FN_MEMALIGN] = "memalign",
  [HKT_FN_VALLOC] = "valloc",
  [HKT_FN_PVALLOC] = "pvalloc",
  [HKT_FN_REALLOC] = "realloc",
  [HKT_FN_REALLOCARRAY] = "reallocarray",
};

const char *hkt_fn_name(unsigned fn) {
  return fn < sizeof fn_names / sizeof fn_names[0] ? fn_names[fn] : "unknown";
}

static const char *const end_names[] = {
  [HKT_END_UNKNOWN] = "unknown",
  [HKT_END_EXIT] = "exit",
  [HKT_END_SIGNAL] = "signal",
  [HKT_END_EXEC] = "exec",
};

const char *hkt_end_name(unsigned end) {
  return end < sizeof end_names / sizeof end_names[0] ? end_names[end] : "unknown";
}

const char *hkt_strerror(int err) {
  switch (err) {
  case HKT_OK: return "success";
  case HKT_ERR_IO: return "input/output error";
  case HKT_ERR_NOT_TRACE: return "not a hakmem trace";
  case HKT_ERR_VERSION: return "unsupported trace format version";
  case HKT_ERR_TRUNCATED: return "trace is truncated (ends inside a frame)";
  case HKT_ERR_CORRUPT: return "trace is corrupt";
  case HKT_ERR_SEQUENCE: return "sequence numbers out of order or missing";
  case HKT_ERR_NOMEM: return "out of memory";
  case HKT_ERR_ARG: return "invalid argument";
  case HKT_ERR_ZSTD: return "zstd error";
  default: return "unknown error";
  }
}
