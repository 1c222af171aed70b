/* hakmem_lttng.c — libhakmem-lttng.so: the `hakmem` tracepoint provider and
 * a recorder (alloc/hook.h) that fires one tracepoint per allocator event.
 *
 * libhakmem dlopen()s this library when HAKMEM_LTTNG=1 and calls
 * hak_lttng_attach(). Kept out of libhakmem itself so that a plain run never
 * maps liblttng-ust nor starts its threads: without HAKMEM_LTTNG the cost of
 * tracing is the hook's one predictable branch.
 *
 * emit() stamps seq like the built-in recorder (one global fetch_add, so seq
 * order is the allocator's effect order) and fires the event's tracepoint.
 * lttng-ust allocates through malloc in its own threads and at start-up;
 * those allocations are ordinary events. A malloc made from *inside* a
 * tracepoint (which lttng-ust's fast path does not do) would recurse: it gets
 * its seq and is not fired, so the importer reports it as a missing event
 * instead of the process deadlocking or the trace silently skipping it. */
#define LTTNG_UST_TRACEPOINT_CREATE_PROBES
#define LTTNG_UST_TRACEPOINT_DEFINE
/* The probe's ip, recorded by the `ip` context: the malloc-family caller. */
#define LTTNG_UST_TP_IP_PARAM ((void *)(uintptr_t)ev->caller)
#include "hakmem_tp.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hook.h"
#include "modinfo.h"
#include "hakmem.h"

/* Resolved against libhakmem.so when it exports them; weak so that this
 * library loads (and says what is missing) when it does not. */
extern void _hak_recorder_attach(const hak_recorder *r) __attribute__((weak));
/* If libhakmem kept the events made before this library was loaded (the
 * loader's and libc's first allocations, lttng-ust's own start-up), it hands
 * them to r->emit in order and then attaches r, atomically for emitters. */
extern void _hak_recorder_handover(const hak_recorder *r) __attribute__((weak));
extern size_t _hak_config_describe(char *buf, size_t n) __attribute__((weak));
extern void hak_stats_get(hak_stats *out) __attribute__((weak));

HAK_API void hak_lttng_attach(void);

static _Atomic uint64_t hkl_seq;
/* initial-exec: a dlopened library's dynamic TLS is allocated with malloc on
 * first touch, which would recurse into the allocator from emit(). */
static __thread int hkl_in_emit __attribute__((tls_model("initial-exec")));

/* The compact layouts of hakmem_tp.h hold an event when the slots they
 * leave out are 0, tid < 255 and cls < 255 or none (255 in 8 bits). */
#define HKL_U32_MAX 0xffffffffull
static inline int hkl_small(const hkt_event *ev) {
  return ev->tid < 0xff && (ev->cls < 0xff || ev->cls == HKT_NO_CLASS) && !ev->aux3 && !ev->str &&
         !ev->bid_len;
}

static void hkl_emit(void *ctx, hkt_event *ev) {
  (void)ctx;
  ev->seq = atomic_fetch_add_explicit(&hkl_seq, 1, memory_order_relaxed);
  if (__builtin_expect(hkl_in_emit, 0)) return;  /* seq gap: reported by import */
  hkl_in_emit = 1;
  int small = hkl_small(ev);
  switch (ev->kind) {
#define HKL_FIT(K, name, cond) \
  case K:                                                 \
    if (small && (cond)) {                                \
      lttng_ust_tracepoint(hakmem, name, ev);             \
    } else {                                              \
      lttng_ust_tracepoint(hakmem, event, ev);            \
    }                                                     \
    break;
  HKL_FIT(HKT_EV_MALLOC, malloc, !ev->fn && !ev->aux && !ev->aux2)
  HKL_FIT(HKT_EV_CALLOC, calloc, !ev->fn && !ev->aux2)
  HKL_FIT(HKT_EV_REALLOC, realloc, ev->fn <= 0xff && !ev->aux2)
  HKL_FIT(HKT_EV_FREE, free, !ev->fn && !ev->size && !ev->aux && !ev->aux2)
  HKL_FIT(HKT_EV_CACHE_REFILL, cache_refill,
          !ev->ptr && !ev->fn && ev->size <= HKL_U32_MAX && ev->aux2 <= HKL_U32_MAX)
  HKL_FIT(HKT_EV_CACHE_FLUSH, cache_flush,
          !ev->ptr && !ev->fn && !ev->aux && !ev->aux2 && ev->size <= HKL_U32_MAX)
  HKL_FIT(HKT_EV_REMOTE_PUSH, remote_push, !ev->size && !ev->fn && ev->aux2 <= HKL_U32_MAX)
  HKL_FIT(HKT_EV_REMOTE_DRAIN, remote_drain,
          !ev->ptr && !ev->fn && !ev->aux2 && ev->size <= HKL_U32_MAX)
#undef HKL_FIT
#define HKL_CASE(K, name) case K: lttng_ust_tracepoint(hakmem, name, ev); break;
  HKL_CASE(HKT_EV_ALIGNED, aligned)
  HKL_CASE(HKT_EV_THREAD_START, thread_start)
  HKL_CASE(HKT_EV_THREAD_EXIT, thread_exit)
  HKL_CASE(HKT_EV_SS_REGISTER, ss_register)
  HKL_CASE(HKT_EV_SS_UNREGISTER, ss_unregister)
  HKL_CASE(HKT_EV_SS_EMPTY, ss_empty)
  HKL_CASE(HKT_EV_SS_ADOPT, ss_adopt)
  HKL_CASE(HKT_EV_SS_ABANDON, ss_abandon)
  HKL_CASE(HKT_EV_LARGE_MAP, large_map)
  HKL_CASE(HKT_EV_LARGE_UNMAP, large_unmap)
  HKL_CASE(HKT_EV_MODULE_LOAD, module_load)
  HKL_CASE(HKT_EV_MARK, mark)
  HKL_CASE(HKT_EV_DETECTION, detection)
  HKL_CASE(HKT_EV_END, end)
#undef HKL_CASE
  default: lttng_ust_tracepoint(hakmem, event, ev); break;  /* newer than this provider */
  }
  hkl_in_emit = 0;
}

static const hak_recorder hkl_recorder = { .emit = hkl_emit };

/* ---- the header, taken once without malloc --------------------------------- */

#define HKL_MAX_MODULES 256
static hkt_module hkl_modules[HKL_MAX_MODULES];
static char hkl_paths[32768];
static size_t hkl_paths_used;
static char hkl_cmdline[4096];
static char hkl_config[4096];

static const char *hkl_keep_path(const char *s) {
  size_t n = strlen(s) + 1;
  if (hkl_paths_used + n > sizeof hkl_paths) return "";
  char *d = hkl_paths + hkl_paths_used;
  memcpy(d, s, n);
  hkl_paths_used += n;
  return d;
}

static int hkl_module_cb(struct dl_phdr_info *info, size_t sz, void *arg) {
  (void)sz;
  uint32_t *n = arg;
  if (*n >= HKL_MAX_MODULES) return 1;
  char path[4096];
  if (hkt_modinfo(info, &hkl_modules[*n], path, sizeof path)) {
    hkl_modules[*n].path = hkl_keep_path(path);
    (*n)++;
  }
  return 0;
}

static void hkl_read_cmdline(void) {
  int fd = open("/proc/self/cmdline", O_RDONLY | O_CLOEXEC);
  ssize_t n = fd >= 0 ? read(fd, hkl_cmdline, sizeof hkl_cmdline - 1) : 0;
  if (fd >= 0) close(fd);
  if (n < 0) n = 0;
  while (n > 0 && hkl_cmdline[n - 1] == 0) n--;
  for (ssize_t i = 0; i < n; i++)
    if (hkl_cmdline[i] == 0) hkl_cmdline[i] = ' ';
  hkl_cmdline[n] = 0;
}

/* The allocator's own description when it exports one, else HAKMEM_* from
 * the environment (what it was configured from). */
static void hkl_read_config(void) {
  extern char **environ;
  if (_hak_config_describe) {
    size_t n = _hak_config_describe(hkl_config, sizeof hkl_config);
    hkl_config[n < sizeof hkl_config ? n : sizeof hkl_config - 1] = 0;
    return;
  }
  size_t used = 0;
  for (char **e = environ; e && *e; e++) {
    size_t n = strlen(*e);
    if (strncmp(*e, "HAKMEM_", 7) || used + n + 2 > sizeof hkl_config) continue;
    memcpy(hkl_config + used, *e, n);
    used += n;
    hkl_config[used++] = '\n';
  }
  hkl_config[used] = 0;
}

static void hkl_emit_header(void) {
  static hak_stats st;  /* large: not on a constructor's stack */
  hkt_header h;
  struct timespec ts;
  memset(&h, 0, sizeof h);
  h.version = HKT_FORMAT_VERSION;
  h.pid = (uint32_t)getpid();
  h.ppid = (uint32_t)getppid();
  clock_gettime(CLOCK_REALTIME, &ts);
  h.start_realtime_ns = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
  h.clock = "lttng";
  hkl_read_cmdline();
  hkl_read_config();
  h.cmdline = hkl_cmdline;
  h.config = hkl_config;
  if (hak_stats_get) {
    hak_stats_get(&st);
    h.arena_base = st.arena_base;
    h.num_classes = st.num_classes < 64 ? st.num_classes : 64;
    for (uint32_t i = 0; i < h.num_classes && i < HAK_NUM_CLASSES; i++)
      h.class_size[i] = st.cls[i].block_size;
  }
  uint32_t nmod = 0;
  hkl_paths_used = 0;
  dl_iterate_phdr(hkl_module_cb, &nmod);
  h.num_modules = nmod;
  h.modules = hkl_modules;

  hkt_event none;
  memset(&none, 0, sizeof none);
  hkl_header_args a = { &h, atomic_load(&hkl_seq) };
  hkl_in_emit = 1;
  lttng_ust_tracepoint(hakmem, header, &none, &a);
  for (uint32_t i = 0; i < nmod; i++)
    lttng_ust_tracepoint(hakmem, header_module, &none, &hkl_modules[i], i);
  hkl_in_emit = 0;
}

/* A forked child is a new process with its own trace: numbering restarts
 * and it describes itself again (the importer tells processes apart by the
 * vpid context). */
static void hkl_atfork_child(void) {
  atomic_store(&hkl_seq, 0);
  hkl_in_emit = 0;
  hkl_emit_header();
}

/* Called by libhakmem once, after dlopen, from its constructor and outside
 * its locks: describe the process, then receive every event. */
void hak_lttng_attach(void) {
  static int attached;
  if (attached) return;
  attached = 1;
  if (!_hak_recorder_attach && !_hak_recorder_handover) {
    static const char msg[] = "hakmem: libhakmem-lttng.so: this libhakmem does not export "
                              "_hak_recorder_attach; LTTng recording is off\n";
    ssize_t r = write(2, msg, sizeof msg - 1);
    (void)r;
    return;
  }
  hkl_emit_header();
  pthread_atfork(NULL, NULL, hkl_atfork_child);
  if (_hak_recorder_handover) _hak_recorder_handover(&hkl_recorder);
  else _hak_recorder_attach(&hkl_recorder);
}
