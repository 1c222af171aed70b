/* init.c — start-up, fork, and exit.
 *
 * The first malloc of the process (often from the dynamic loader or libc's
 * own set-up) initializes everything it needs without allocating: config,
 * arena, the thread-exit key, the recorder. What needs a working libc
 * (atfork handlers, the exit report, loading the LTTng provider) waits for
 * the constructor. */
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

_Atomic int _hak_inited;
static hak_lock_t init_lock;
void _hak_heap_setup_key(void);

void _hak_init_slow(void) {
  hak_lock(&init_lock);
  if (!atomic_load_explicit(&_hak_inited, memory_order_relaxed)) {
    _hak_config_read();
    _hak_instr_update();
    _hak_sentinels_init();
    if (_hak_arena_init() != 0) {
      _hak_msg("cannot reserve the arena (%llu bytes of address space)",
               (unsigned long long)(2 * _hak_cfg.arena_reserve));
      abort();
    }
    _hak_heap_setup_key();
    if (_hak_cfg.lttng) _hak_early_start();
    else if (_hak_recorder_autostart) _hak_recorder_autostart();
    atomic_store_explicit(&_hak_inited, 1, memory_order_release);
  }
  hak_unlock(&init_lock);
}

/* fork: hold every global lock across it so the child sees consistent
 * structures, then let both sides go on. The child keeps the forking
 * thread's heap; SuperSlabs of the parent's other threads stay owned by
 * threads that do not exist here (their blocks can still be freed: those
 * frees go to the remote queues). A recorder marks the fork, lock held:
 * the child's trace starts from the heap as it is at that event (its
 * replay replays the parent's trace up to there), so every change of
 * shared state must be on one side of it (a thread's own cache it is not:
 * the child never touches another thread's). */
uint64_t _hak_fork_seq1;
static void fork_prepare(void) {
  uint32_t tid = HAK_REC_ON() ? _hak_thread_index() : 0;   /* sets the thread up: before the lock */
  hak_lock(&_hak_global);
  /* The recorder numbers the event (ev.seq); the lock is held until the
   * fork is done, so the child's copy has this fork's seq. */
  hkt_event ev = {.kind = HKT_EV_FORK, .tid = tid, .cls = HKT_NO_CLASS, .seq = UINT64_MAX,
                  .caller = (uint64_t)(uintptr_t)__builtin_return_address(0)};
  if (HAK_REC_ON()) _hak_emit(&ev);
  _hak_fork_seq1 = ev.seq + 1;   /* 0: not recorded */
}
static void fork_parent(void) { hak_unlock(&_hak_global); }
/* The child has one thread: a SuperSlab's remote lock (taken only while
 * recording) that another thread of the parent held is free here. */
static void fork_child(void) {
  uint64_t top = _hak_arena.ss_top >> HAK_CHUNK_LG;
  for (uint64_t i = 0; i < top; i++) {
    hak_ss *ss = _hak_arena.ssmap[i];
    if (ss) atomic_store_explicit(&ss->remote_lock.v, 0, memory_order_relaxed);
  }
  _hak_early_fork_child();
  hak_unlock(&_hak_global);
}

static void load_lttng(void) {
  /* The provider is a companion library next to libhakmem.so. */
  Dl_info info;
  char path[4096];
  if (!dladdr((void *)load_lttng, &info) || !info.dli_fname) return;
  const char *slash = strrchr(info.dli_fname, '/');
  size_t dir = slash ? (size_t)(slash - info.dli_fname + 1) : 0;
  if (dir + 32 > sizeof path) return;
  memcpy(path, info.dli_fname, dir);
  strcpy(path + dir, "libhakmem-lttng.so");
  void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
  if (!h) { _hak_msg("HAKMEM_LTTNG=1: cannot load %s: %s", path, dlerror()); return; }
  void (*attach)(void) = (void (*)(void))dlsym(h, "hak_lttng_attach");
  if (attach) attach();
  else _hak_msg("HAKMEM_LTTNG=1: %s has no hak_lttng_attach", path);
}

__attribute__((constructor)) static void hak_ctor(void) {
  _hak_init();
  pthread_atfork(fork_prepare, fork_parent, fork_child);
  /* Programs may close stderr on their way out (coreutils do, in an atexit
   * handler); the exit report keeps its own copy. */
  if (_hak_cfg.stats) _hak_g.report_fd = fcntl(2, F_DUPFD_CLOEXEC, 10);
  if (_hak_cfg.lttng) load_lttng();
}

__attribute__((destructor)) static void hak_dtor(void) {
  if (_hak_cfg.stats) hak_stats_print(_hak_g.report_fd > 0 ? _hak_g.report_fd : 2);
}
