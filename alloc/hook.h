/* hook.h — the allocator's only window to recording and replay.
 *
 * alloc/ knows nothing of files: it fills an hkt_event (kind, tid, cls and
 * the fields hakmem/trace.h gives each kind) and hands it to the attached
 * recorder, which stamps seq and time and stores it. trace/ implements a
 * recorder; replay/ implements one that checks instead of storing.
 *
 * Ordering contract, what makes replay deterministic:
 *  - an event that changes state other threads can see (SS register/
 *    unregister/adopt/abandon, remote push/drain, large map/unmap, thread
 *    start) is emitted while holding the lock that orders that state, so
 *    seq order is the order of the effects;
 *  - before taking such a lock the allocator calls wait(), where a replayer
 *    blocks until this thread's next recorded event is due (a recorder has
 *    wait = NULL);
 *  - all other events touch only the calling thread's state.
 * emit() and wait() must never call back into the allocator.
 *
 * With no recorder attached each hook costs one predictable branch. */
#ifndef HAK_HOOK_H
#define HAK_HOOK_H

#include "hakmem/trace.h"

typedef struct hak_recorder {
  void (*wait)(void *ctx);
  void (*emit)(void *ctx, hkt_event *ev);
  void *ctx;
} hak_recorder;

/* Defined in alloc/hook.c. */
extern const hak_recorder *_hak_rec;
/* Exported from libhakmem.so: the LTTng companion library attaches through it. */
__attribute__((visibility("default"))) void _hak_recorder_attach(const hak_recorder *r);  /* NULL detaches */
/* alloc/early.c: with HAKMEM_LTTNG=1, the events made before the LTTng
 * provider is loaded are kept; the provider takes them (in order, into
 * r->emit) and attaches r, atomically for emitters. */
__attribute__((visibility("default"))) void _hak_recorder_handover(const hak_recorder *r);
void _hak_early_start(void);
void _hak_early_fork_child(void);

/* What the malloc and free fast paths must do besides their work, in one
 * word they test: 0 nothing; 1 debug level 1 only (the fast paths go on,
 * checking and setting one state byte per block); 2 anything else (a
 * recorder attached, debug level 2 or 3): everything takes the slow paths.
 * Kept by _hak_instr_update (hook.c), called at init and on attach. */
extern int _hak_instr;
void _hak_instr_update(void);
#ifdef HAK_NO_HOOKS   /* the benchmark's baseline: what the hooks cost */
#define HAK_INSTR_SLOW() 0
#define HAK_INSTR_DBG1() 0
#else
#define HAK_INSTR_SLOW() __builtin_expect(_hak_instr > 1, 0)
#define HAK_INSTR_DBG1() __builtin_expect(_hak_instr == 1, 0)
#endif

/* Decoded as `if (unlikely(_hak_rec)) ...` at every event site. */
#ifdef HAK_NO_HOOKS
#define HAK_REC_ON() 0
#else
#define HAK_REC_ON() __builtin_expect(_hak_rec != NULL, 0)
#endif

/* The recorder can be detached at any moment (exit, a crash, fork): read
 * the slot once per use, never twice. */
static inline const hak_recorder *_hak_rec_get(void) {
  return __atomic_load_n(&_hak_rec, __ATOMIC_ACQUIRE);
}

static inline void _hak_rec_wait(void) {
  if (HAK_REC_ON()) {
    const hak_recorder *r = _hak_rec_get();
    if (r && r->wait) r->wait(r->ctx);
  }
}

#endif /* HAK_HOOK_H */

/* trace/ defines this (weakly referenced, so alloc/ links without trace/):
 * called once from allocator init, after configuration is read and before
 * the first event, to attach the recorder when HAKMEM_TRACE asks for one.
 * It runs inside the first malloc of the process: it must not allocate. */
void _hak_recorder_autostart(void) __attribute__((weak));

/* This thread's index, setting the thread up (THREAD_START) if it has not
 * touched the allocator yet: for events a recorder makes itself (MARK). */
uint32_t _hak_thread_index(void);
