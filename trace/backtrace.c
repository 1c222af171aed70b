/* backtrace.c — call stacks for --backtrace N, deduplicated into ids.
 *
 * Frames come from libgcc's _Unwind_Backtrace (DWARF CFI, so programs built
 * without frame pointers unwind too; it does not allocate for modules with
 * an .eh_frame_hdr, which is every module a modern toolchain builds).
 * libgcc_s is loaded only when stacks are asked for (hkt_stack_init, from
 * the recorder's constructor): linked in, it was loaded, and ~100 KiB of
 * it resident, in every program on libhakmem. The
 * table lives in the spool, so that recovery can still name every stack:
 * entries by id, a hash index of ids, and the frames, appended under a
 * spin lock that only threads with a new stack hold for long. */
#include <dlfcn.h>
#include <sched.h>
#include <unwind.h>   /* types only: the functions come from dlsym */
#include "hook.h"
#include "recorder.h"

typedef struct bt_ctx { uint64_t *frames; unsigned n, depth, skip; } bt_ctx;

static __typeof__(&_Unwind_GetIP) unwind_ip;
static _Atomic(__typeof__(&_Unwind_Backtrace)) unwind_bt;   /* set last: then both are */

int hkt_stack_init(void) {
  if (atomic_load(&unwind_bt)) return 0;
  _hak_bypass_begin();   /* the loader's allocations: not the program's events */
  void *lib = dlopen("libgcc_s.so.1", RTLD_NOW);
  __typeof__(&_Unwind_Backtrace) bt = lib ? (__typeof__(bt))dlsym(lib, "_Unwind_Backtrace") : NULL;
  unwind_ip = lib ? (__typeof__(unwind_ip))dlsym(lib, "_Unwind_GetIP") : NULL;
  _hak_bypass_end();
  if (!bt || !unwind_ip) return -1;
  atomic_store_explicit(&unwind_bt, bt, memory_order_release);
  return 0;
}

static _Unwind_Reason_Code on_frame(struct _Unwind_Context *uc, void *arg) {
  bt_ctx *c = arg;
  uint64_t ip = (uint64_t)unwind_ip(uc);
  if (!ip) return _URC_END_OF_STACK;
  if (c->skip) { c->skip--; return _URC_NO_REASON; }
  c->frames[c->n++] = ip;
  return c->n == c->depth ? _URC_END_OF_STACK : _URC_NO_REASON;
}

static uint64_t hash_frames(const uint64_t *f, unsigned n) {
  uint64_t h = 0xcbf29ce484222325ull ^ n;
  for (unsigned i = 0; i < n; i++) h = (h ^ f[i]) * 0x100000001b3ull, h ^= h >> 29;
  return h | 1;
}

uint32_t hkt_stack_capture(hkt_spool *s, unsigned depth, unsigned skip) {
  hkt_spool_hdr *h = s->h;
  if (!h->stack_cap) return 0;
  uint64_t frames[HKT_MAX_STACK_DEPTH];
  if (depth > HKT_MAX_STACK_DEPTH) depth = HKT_MAX_STACK_DEPTH;
  bt_ctx c = { frames, 0, depth, skip + 1 };
  __typeof__(&_Unwind_Backtrace) bt = atomic_load_explicit(&unwind_bt, memory_order_acquire);
  if (!bt) return 0;   /* before hkt_stack_init: the loader's and libc's first calls */
  bt(on_frame, &c);
  if (!c.n) return 0;
  uint64_t hash = hash_frames(frames, c.n);
  uint32_t slots = h->stack_cap * 2, slot = (uint32_t)(hash >> 20) % slots;

  /* lookup without the lock: entries below nstacks are complete */
  uint32_t visible = atomic_load_explicit(&h->nstacks, memory_order_acquire);
  for (uint32_t k = 0; k < slots; k++) {
    uint32_t id = __atomic_load_n(&s->stack_idx[(slot + k) % slots], __ATOMIC_ACQUIRE);
    if (!id) break;
    if (id > visible) continue;
    hkt_stack_ent *e = &s->stacks[id - 1];
    if (e->hash == hash && e->n == c.n && !memcmp(s->sframes + e->off, frames, c.n * 8)) return id;
  }
  while (atomic_exchange_explicit(&h->stack_lock, 1, memory_order_acquire)) sched_yield();
  uint32_t id = 0, n = atomic_load_explicit(&h->nstacks, memory_order_relaxed);
  for (uint32_t k = 0; k < slots; k++) {   /* again, under the lock */
    uint32_t *ix = &s->stack_idx[(slot + k) % slots];
    if (*ix) {
      hkt_stack_ent *e = &s->stacks[*ix - 1];
      if (e->hash == hash && e->n == c.n && !memcmp(s->sframes + e->off, frames, c.n * 8)) { id = *ix; break; }
      continue;
    }
    uint64_t off = atomic_load_explicit(&h->nsframes, memory_order_relaxed);
    if (n >= h->stack_cap || off + c.n > h->sframes_cap) break;   /* full: no stack */
    hkt_stack_ent *e = &s->stacks[n];
    e->hash = hash;
    e->off = off;
    e->n = c.n;
    memcpy(s->sframes + off, frames, c.n * 8);
    atomic_store_explicit(&h->nsframes, off + c.n, memory_order_relaxed);
    id = n + 1;
    atomic_store_explicit(&h->nstacks, id, memory_order_release);
    __atomic_store_n(ix, id, __ATOMIC_RELEASE);
    break;
  }
  atomic_store_explicit(&h->stack_lock, 0, memory_order_release);
  return id;
}
