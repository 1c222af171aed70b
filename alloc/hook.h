/* hook.h — the allocator's only window to recording and replay.
 *
 * alloc/ knows nothing of files: it fills an hkt_event (kind, tid, cls and
 * the fields hakmem/trace.h gives each kind) and hands it to the attached
 * recorder, which stamps seq and time and stores it; malloc-family calls go
 * to emit_call instead when the recorder has one (the same fields, in
 * registers). trace/ implements a recorder; replay/ implements one that
 * checks instead of storing.
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
 * emit(), emit_call() and wait() must never call back into the allocator.
 *
 * With no recorder attached each hook costs one predictable branch. */
#ifndef HAK_HOOK_H
#define HAK_HOOK_H

#include "hakmem/trace.h"

typedef struct hak_recorder {
  void (*wait)(void *ctx);
  void (*emit)(void *ctx, hkt_event *ev);
  void *ctx;
  /* Optional (NULL: emit is used): a malloc-family call (kinds MALLOC to
   * FREE) with the fields emit would get, all in registers: kind, fn, cls
   * and tid packed in `meta` (HAK_CALL_META), no ctx. The recorder writes
   * its record directly: no hkt_event is built and zeroed, and the
   * allocator's call is a jump. Same contract as emit. */
  void (*emit_call)(uint64_t meta, uint64_t ptr, uint64_t size, uint64_t aux, uint64_t aux2, uint64_t caller);
  /* 1: every malloc-family call goes through the slow paths, so that each
   * event is made one allocator frame below the program's call (a recorder
   * that captures stacks skips a fixed number of frames). 0: the _miss
   * functions emit the common calls themselves (_hak_instr 2). */
  int same_depth;
} hak_recorder;

/* emit_call's meta word: kind (8 bits), fn (8; every HKT_FN_ fits), cls (16;
 * HKT_NO_CLASS is 0xffff) and the thread index (32). */
#define HAK_CALL_META(kind, fn, cls, tid)                                                \
  ((uint64_t)(uint8_t)(kind) | (uint64_t)(uint8_t)(fn) << 8 |                           \
   (uint64_t)((cls) > 0xffff ? 0xffff : (cls)) << 16 | (uint64_t)(uint32_t)(tid) << 32)
#define HAK_META_KIND(m) ((uint16_t)((m) & 0xff))
#define HAK_META_FN(m)   ((uint16_t)((m) >> 8 & 0xff))
#define HAK_META_CLS(m)  ((uint32_t)((m) >> 16 & 0xffff))
#define HAK_META_TID(m)  ((uint32_t)((m) >> 32))
_Static_assert(HKT_FN_REALLOCARRAY <= 0xff && HKT_EV_FREE <= 0xff && HKT_NO_CLASS == 0xffff, "meta word fields");

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
/* alloc/bypass.c: between begin and end this thread's allocations come
 * from an arena of their own and are not recorded: for the libraries the
 * recorder loads itself (trace/zstd_api.c, trace/backtrace.c). */
void _hak_bypass_begin(void);
void _hak_bypass_end(void);

/* What the malloc and free fast paths must do besides their work, in one
 * word they test: 0 nothing; 1 debug level 1 only (the _miss functions do
 * the fast paths' work, checking and setting one state byte per block);
 * 2 a recorder attached, no debug (the _miss functions do the fast paths'
 * work and emit the call's event); 3 anything else (a recorder with debug,
 * debug level 2 or 3): the slow paths. Kept by _hak_instr_update (hook.c),
 * called at init and on attach. */
extern int _hak_instr __attribute__((visibility("hidden")));   /* one rip-relative load, not through the GOT */
void _hak_instr_update(void);
#ifdef HAK_NO_HOOKS   /* the benchmark's baseline: what the hooks cost */
#define HAK_INSTR_DBG1() 0
#define HAK_INSTR_REC()  0
#else
#define HAK_INSTR_DBG1() __builtin_expect(_hak_instr == 1, 0)
#define HAK_INSTR_REC()  __builtin_expect(_hak_instr == 2, 1)
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
/* The seq + 1 of the FORK event fork_prepare (init.c) made for the fork in
 * progress, 0 if none was recorded: a forked child's recorder names it in
 * its trace's header. */
extern uint64_t _hak_fork_seq1;
/* trace/ defines this too: the process leaves by _exit (alloc/shim.c). */
void _hak_recorder_exit(int status) __attribute__((weak));

/* This thread's index, setting the thread up (THREAD_START) if it has not
 * touched the allocator yet: for events a recorder makes itself (MARK). */
uint32_t _hak_thread_index(void);
