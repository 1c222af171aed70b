/* inject.c — HAKMEM_INJECT: the seed project's allocator bugs, on purpose.
 *
 *   HAKMEM_INJECT=kind[:class][@after][/thread]
 *
 * The fault fires in each thread (or only in the one with that thread
 * index) at its (after+1)-th event of the kind's site in that size class
 * (any class when none is given), once per thread. Counting a thread's own
 * events makes the point the same on every run and on replay, however
 * threads interleave. Each firing says so on stderr.
 *
 *   early_release    site: a cache refill. The SuperSlab the refill just
 *                    took blocks from is unregistered and given back to the
 *                    arena while this thread's cache still holds its blocks
 *                    (the seed's weeks-long bug). Those pointers are now
 *                    stale: handed out, freed, and their chunk reused by the
 *                    next SuperSlab. Debug level 1+: the release invariant
 *                    fires at the release (inside malloc).
 *   early_release_flush  the same bug at another site: a cache flush (a
 *                    free that found the cache full) that keeps blocks; the
 *                    SuperSlab of the block on top of the cache is released
 *                    (a release decided on the SuperSlab's own lists, blind
 *                    to the caches). Detected inside that free(), whose
 *                    event is written on entry: a run that aborts there
 *                    replays exactly.
 *   early_decrement  site: a cache refill. The SuperSlab's live count drops
 *                    by one block that is still out, so it looks empty too
 *                    early and is parked or released under that block.
 *                    Debug 1+: the accounting check at the next refill, or
 *                    the audit when the SuperSlab is retired or abandoned.
 *   lost_drain       site: a remote drain that found blocks. The drained
 *                    blocks are counted back but never reach the freelist:
 *                    they are lost until the SuperSlab empties. Debug 1+:
 *                    the accounting check right after the drain.
 *   skip_pin         site: a remote drain that found blocks. One drained
 *                    block had its pin skipped (a remote free that did not
 *                    hold the SuperSlab): it is counted back twice, so the
 *                    SuperSlab can be retired under a block still in use.
 *                    Debug 1+: the accounting check, as early_decrement.
 * Faults change the allocator's own state only through the calls below,
 * made by the owning thread, so replay re-creates them exactly. */
#include <string.h>
#include "internal.h"

int _hak_inject_kind;
static unsigned inj_cls = HKT_NO_CLASS;     /* any */
static uint64_t inj_after;
static uint32_t inj_tid = HAK_NO_OWNER;     /* any */
static __thread uint64_t inj_count __attribute__((tls_model("initial-exec")));
static __thread int inj_fired __attribute__((tls_model("initial-exec")));
/* Minimize (replay/) moves the firing point to a call it chooses: held, the
 * injection counts its site events as ever but fires only in a thread the
 * replay armed, at that thread's next site event. The count it fired at is
 * the `@after` that fires there without help (in a plain run, on replay). */
static int inj_held;
static __thread int inj_armed __attribute__((tls_model("initial-exec")));
static __thread uint64_t inj_fired_after __attribute__((tls_model("initial-exec")));

static const char *const kind_names[] = {
  [HAK_INJ_NONE] = "none", [HAK_INJ_EARLY_RELEASE] = "early_release",
  [HAK_INJ_EARLY_DECREMENT] = "early_decrement", [HAK_INJ_LOST_DRAIN] = "lost_drain",
  [HAK_INJ_SKIP_PIN] = "skip_pin", [HAK_INJ_EARLY_RELEASE_FLUSH] = "early_release_flush",
};
#define NKINDS (sizeof kind_names / sizeof kind_names[0])

void _hak_inject_parse(const char *spec) {
  if (!spec || !*spec || !strcmp(spec, "none")) return;
  char buf[64];
  size_t n = strlen(spec);
  if (n >= sizeof buf) { _hak_msg("HAKMEM_INJECT=%s: too long; ignored", spec); return; }
  memcpy(buf, spec, n + 1);
  char *slash = strchr(buf, '/');
  if (slash) *slash++ = '\0';
  char *at = strchr(buf, '@'), *colon = strchr(buf, ':');
  if (at) *at++ = '\0';
  if (colon && (!at || colon < at)) *colon++ = '\0'; else colon = NULL;
  int kind = 0;
  for (unsigned k = 1; k < NKINDS; k++) if (!strcmp(buf, kind_names[k])) kind = (int)k;
  if (!kind) {
    _hak_msg("HAKMEM_INJECT=%s: unknown kind '%s' (early_release, early_release_flush, early_decrement, "
             "lost_drain, skip_pin); ignored", spec, buf);
    return;
  }
  unsigned cls = HKT_NO_CLASS;
  int ok = 1;
  if (colon) {
    if (*colon == 'c' || *colon == 'C') colon++;
    uint64_t v = _hak_parse_u64(colon, &ok);
    if (!ok || v >= HAK_CLASSES) { _hak_msg("HAKMEM_INJECT=%s: class must be 0..%d; ignored", spec, HAK_CLASSES - 1); return; }
    cls = (unsigned)v;
  }
  uint64_t after = 0;
  if (at) {
    after = _hak_parse_u64(at, &ok);
    if (!ok) { _hak_msg("HAKMEM_INJECT=%s: '@%s' is not a count; ignored", spec, at); return; }
  }
  uint32_t tid = HAK_NO_OWNER;
  if (slash) {
    uint64_t v = _hak_parse_u64(slash, &ok);
    if (!ok || v >= HAK_NO_OWNER - 1) { _hak_msg("HAKMEM_INJECT=%s: '/%s' is not a thread index; ignored", spec, slash); return; }
    tid = (uint32_t)v;
  }
  inj_cls = cls;
  inj_after = after;
  inj_tid = tid;
  _hak_inject_kind = kind;
}

size_t _hak_inject_describe(char *buf, size_t n) {
  if (!_hak_inject_kind) return (size_t)_hak_fmt(buf, n, "none");
  char cls[16] = "", tid[16] = "";
  if (inj_cls != HKT_NO_CLASS) _hak_fmt(cls, sizeof cls, ":%u", inj_cls);
  if (inj_tid != HAK_NO_OWNER) _hak_fmt(tid, sizeof tid, "/%u", inj_tid);
  int r = _hak_fmt(buf, n, "%s%s@%llu%s", kind_names[_hak_inject_kind], cls, (unsigned long long)inj_after, tid);
  return r < 0 ? 0 : ((size_t)r < n ? (size_t)r : n - 1);
}

/* This thread's site event in cls: is it the one that fires? */
static int due(int kind, unsigned cls) {
  if (_hak_inject_kind != kind || inj_fired) return 0;
  if (inj_cls != HKT_NO_CLASS && cls != inj_cls) return 0;
  if (inj_tid != HAK_NO_OWNER && _hak_tls_idx != inj_tid) return 0;
  if (inj_held ? !inj_armed : inj_count < inj_after) { inj_count++; return 0; }
  inj_fired_after = inj_count++;
  inj_fired = 1;
  return 1;
}

void _hak_inject_hold(void) { inj_held = 1; }
void _hak_inject_arm(void) { inj_armed = 1; }

/* Did the injection fire in this thread? Then *after is its `@after`. */
int _hak_inject_fired_here(uint64_t *after) {
  if (!inj_fired) return 0;
  *after = inj_fired_after;
  return 1;
}

static uint32_t cached_of(const hak_heap *h, const hak_ss *ss) {
  const hak_tcache *tc = &h->cache[ss->cls];
  uint32_t k = 0;
  for (uint32_t i = 0; i < tc->count; i++) k += _hak_ss_of(tc->slot[i]) == ss;
  return k;
}

/* Unregister ss and give its chunk back although blocks of it are live:
 * what the allocator's own release refuses to do. */
static void release_now(hak_heap *h, hak_ss *ss, unsigned cls) {
  if (h->active[cls] == ss) h->active[cls] = NULL;
  else if (ss->where == HAK_SS_WARM) _hak_sslist_remove(&h->warm[cls], ss);
  else if (ss->where == HAK_SS_FULL) _hak_sslist_remove(&h->full[cls], ss);
  ss->where = HAK_SS_NOWHERE;
  _hak_rec_wait();
  hak_lock(&_hak_global);
  uint32_t cached = cached_of(h, ss);
  _hak_msg("HAKMEM_INJECT=%s fired in thread %u: releasing SuperSlab #%u (class %u, base %p) "
           "with %u live blocks, %u of them in this thread's cache", kind_names[_hak_inject_kind], h->idx, ss->id,
           cls, (void *)ss, ss->live, cached);
  /* The detection's event is emitted under the lock, right after the
   * release: what it says of the chunk (its class, in the history) is then
   * this SuperSlab's, not that of one another thread registers there next.
   * Its report, which may abort, comes after the lock is dropped: a process
   * must not die (nor a replay stop) with the global lock held. */
  char what[160];
  uint32_t live = ss->live;
  _hak_fmt(what, sizeof what, "SuperSlab released with %u live blocks, %u of them in thread %u's cache",
           live, cached, h->idx);
  unsigned lg = ss->lg_size;
  _hak_ss_unregister(h, ss);
  uint64_t dseq = HAK_NO_SEQ;
  char where[256];
  if (HAK_DBG_ON()) {
    dseq = _hak_detect_emit(HKT_DET_SS_INVARIANT, ss, NULL, live);
    _hak_detect_where(where, sizeof where, ss, NULL);
  }
  atomic_fetch_sub_explicit(&_hak_g.ss_live, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&_hak_g.ss_unreg, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&_hak_g.ss_unreg_cls[cls], 1, memory_order_relaxed);
  _hak_arena_ss_free(ss, lg);
  hak_unlock(&_hak_global);
  if (HAK_DBG_ON()) _hak_detect_report(HKT_DET_SS_INVARIANT, ss, NULL, what, dseq, where);
}

/* After a flush that kept blocks: the top one's SuperSlab is this thread's. */
void _hak_inject_flush(hak_heap *h, unsigned cls) {
  const hak_tcache *c = &h->cache[cls];
  if (!c->count || h->state != HAK_HEAP_LIVE) return;
  hak_ss *ss = _hak_ss_of(c->slot[c->count - 1]);
  if (ss && HAK_RD(ss->owner) == h->idx && due(HAK_INJ_EARLY_RELEASE_FLUSH, cls)) release_now(h, ss, cls);
}

void _hak_inject_refill(hak_heap *h, hak_ss *ss, unsigned cls, uint32_t n) {
  if (!n || h->active[cls] != ss) return;
  if (due(HAK_INJ_EARLY_RELEASE, cls)) {
    release_now(h, ss, cls);
  } else if (due(HAK_INJ_EARLY_DECREMENT, cls)) {
    _hak_msg("HAKMEM_INJECT=early_decrement fired in thread %u: SuperSlab #%u (class %u, base %p) live %u -> %u",
             h->idx, ss->id, cls, (void *)ss, ss->live, ss->live - 1);
    ss->live--;
  }
}

/* After _hak_ss_drain_remote pushed n blocks on the head of ss's freelist. */
void _hak_inject_drain(hak_heap *h, hak_ss *ss, uint32_t n) {
  if (!n) return;
  if (due(HAK_INJ_LOST_DRAIN, ss->cls)) {
    _hak_msg("HAKMEM_INJECT=lost_drain fired in thread %u: %u blocks drained from SuperSlab #%u (class %u, base %p) are lost",
             h->idx, n, ss->id, ss->cls, (void *)ss);
    for (uint32_t i = 0; i < n && ss->freelist; i++) {
      ss->freelist = *(void **)ss->freelist;
      ss->nfree--;
    }
  } else if (due(HAK_INJ_SKIP_PIN, ss->cls)) {
    _hak_msg("HAKMEM_INJECT=skip_pin fired in thread %u: a remote free into SuperSlab #%u (class %u, base %p) is counted back twice",
             h->idx, ss->id, ss->cls, (void *)ss);
    ss->live--;
  }
}
