/* collect.c — the one pass: every event updates the lifecycle model.
 *
 * The program's view (blocks allocated and not yet freed) is exact from the
 * call events. The allocator's view (blocks sitting in thread caches and
 * remote queues) is only known in counts, so who held a SuperSlab's blocks
 * when it was released is inferred from the blocks' last frees; see
 * scan_holders. Anything that looks wrong (a detection, a free into a
 * SuperSlab no longer registered, a free of a freed block, an allocation
 * inside a released SuperSlab) becomes a correlation: a copy of the block's
 * history at that moment plus a link to its SuperSlab's record. */
#include <stdlib.h>
#include <string.h>

#include "analyze.h"

#define MAX_TID (1u << 20)          /* thread indexes past this are not tracked per thread */
#define MAX_HOLDER_SCANS 64         /* table scans at releases with blocks still held */

static char *dupstr(const char *s) { return s ? strdup(s) : NULL; }
static void ss_memo_clear(hka_state *s);

static int add_module(hka_state *s, const char *path, uint64_t base, uint64_t size,
                      const uint8_t *bid, uint32_t bid_len) {
  if (s->nmodules == s->modules_cap) {
    uint32_t ncap = s->modules_cap ? s->modules_cap * 2 : 16;
    hka_module *m = realloc(s->modules, ncap * sizeof *m);
    if (!m) return HKT_ERR_NOMEM;
    s->modules = m;
    s->modules_cap = ncap;
  }
  hka_module *m = &s->modules[s->nmodules++];
  memset(m, 0, sizeof *m);
  m->path = dupstr(path ? path : "");
  m->base = base;
  m->size = size;
  if (bid && bid_len) {
    m->build_id_len = bid_len > sizeof m->build_id ? sizeof m->build_id : bid_len;
    memcpy(m->build_id, bid, m->build_id_len);
  }
  return m->path ? 0 : HKT_ERR_NOMEM;
}

int hka_init(hka_state *s, const char *path, const hkt_header *h) {
  memset(s, 0, sizeof *s);
  s->path = path;
  s->hdr = *h;
  s->cmdline = dupstr(h->cmdline);
  s->clock = dupstr(h->clock);
  s->config = dupstr(h->config);
  s->parent_trace = dupstr(h->forked && h->parent_trace ? h->parent_trace : "");
  s->hdr.cmdline = s->cmdline;
  s->hdr.clock = s->clock;
  s->hdr.config = s->config;
  s->hdr.parent_trace = s->parent_trace;
  s->inh.heap = s->inh.unknown_ok = h->forked != 0;   /* else: the first event tells (note_start) */
  s->inh.fork_seq = h->forked ? h->fork_seq : HKA_NONE;
  s->hdr.modules = NULL;
  for (uint32_t i = 0; i < h->num_modules; i++) {
    const hkt_module *m = &h->modules[i];
    HKT_TRY(add_module(s, m->path, m->base, m->size, m->build_id, m->build_id_len));
  }
  s->first_seq = HKA_NONE;
  for (int i = 0; i < 64; i++) s->ss_cache[i].base = HKA_NONE;
  ss_memo_clear(s);
  s->blocks.ghost_cap = 1u << 16;
  s->tl.width = 1;
  return 0;
}

uint64_t hka_class_size(const hka_state *s, uint32_t cls) {
  return cls < s->hdr.num_classes && cls < 64 ? s->hdr.class_size[cls] : 0;
}

static inline uint32_t cls_index(uint32_t cls) { return cls < 64 ? cls : HKA_LARGE; }

static hka_thread *thread_slow(hka_state *s, uint32_t tid);
static inline hka_thread *thread_of(hka_state *s, uint32_t tid) {
  if (tid < s->threads_cap && s->threads[tid].seen) return &s->threads[tid];
  return thread_slow(s, tid);
}

static hka_thread *thread_slow(hka_state *s, uint32_t tid) {
  if (tid >= MAX_TID) return NULL;
  if (tid >= s->threads_cap) {
    uint32_t ncap = s->threads_cap ? s->threads_cap : 16;
    while (ncap <= tid) ncap *= 2;
    hka_thread *t = realloc(s->threads, ncap * sizeof *t);
    if (!t) return NULL;
    memset(t + s->threads_cap, 0, (ncap - s->threads_cap) * sizeof *t);
    s->threads = t;
    s->threads_cap = ncap;
  }
  hka_thread *t = &s->threads[tid];
  if (!t->seen) {
    t->seen = 1;
    t->start_seq = t->exit_seq = HKA_NONE;
    if (tid >= s->nthreads) s->nthreads = tid + 1;
  }
  return t;
}

/* ---- SuperSlabs --------------------------------------------------------- */

static unsigned lg_ceil(uint64_t v) {
  unsigned lg = 0;
  while (lg < 63 && (1ULL << lg) < v) lg++;
  return lg;
}

/* The record index + 1 of the SuperSlab (current or last at its base) whose
 * range holds ptr, 0 if none. SuperSlabs are naturally aligned. */
static uint32_t ss_index(const hka_state *s, uint64_t ptr) {
  for (uint64_t m = s->ss_lg_mask; m; m &= m - 1) {
    unsigned lg = (unsigned)__builtin_ctzll(m);
    uint64_t base = ptr & ~((1ULL << lg) - 1);
    const uint64_t *v = hka_map_find(&s->ss_by_base, base);
    if (v && ptr - base < s->ss[*v - 1].size) return (uint32_t)*v;
  }
  return 0;
}

/* ss_by_base's value for base (0 if none) through s->ss_cache: the map
 * changes only in new_ss, which writes its entry through. */
static inline size_t ss_cache_home(uint64_t base) { return hka_fib(base >> 20, 64); }

static inline uint32_t ss_lookup(hka_state *s, uint64_t base) {
  __typeof__(s->ss_cache[0]) *e = &s->ss_cache[ss_cache_home(base)];
  if (e->base != base) {
    const uint64_t *v = hka_map_find(&s->ss_by_base, base);
    e->base = base;
    e->idx1 = v ? *v : 0;
  }
  return (uint32_t)e->idx1;
}

/* ss_index through the cache: the one the events use. */
static inline uint32_t ss_index_cached(hka_state *s, uint64_t ptr) {
  for (uint64_t m = s->ss_lg_mask; m; m &= m - 1) {
    unsigned lg = (unsigned)__builtin_ctzll(m);
    uint64_t base = ptr & ~((1ULL << lg) - 1);
    uint32_t i = ss_lookup(s, base);
    if (i && ptr - base < s->ss[i - 1].size) return i;
  }
  return 0;
}

/* While every SuperSlab size is a power of two, ss_index(ptr) depends
 * only on ptr >> (the lowest log2 size): each base it tries and each range
 * check is a function of those bits. The result per such region is kept
 * until the next record (new_ss empties the memo): one probe per
 * allocation instead of a map lookup per SuperSlab size. */
static void ss_memo_clear(hka_state *s) {
  for (int i = 0; i < 64; i++) s->ss_memo[i].region = HKA_NONE;
}

static inline __attribute__((always_inline)) uint32_t ss_index_memo(hka_state *s, uint64_t ptr) {
  if (s->ss_odd_size) return ss_index_cached(s, ptr);
  uint64_t region = ptr >> s->ss_lg_min;
  __typeof__(s->ss_memo[0]) *e = &s->ss_memo[hka_fib(region, 64)];
  if (e->region == region) return (uint32_t)e->idx1;
  uint32_t i = ss_index_cached(s, ptr);
  if (region != HKA_NONE) { e->region = region; e->idx1 = i; }
  return i;
}

hka_ss *hka_ss_of(const hka_state *s, uint64_t ptr) {
  uint32_t i = ss_index(s, ptr);
  return i ? &s->ss[i - 1] : NULL;
}

static hka_ss *new_ss(hka_state *s, uint64_t base, uint64_t size) {
  if (s->nss == s->ss_cap) {
    uint32_t ncap = s->ss_cap ? s->ss_cap * 2 : 64;
    hka_ss *n = realloc(s->ss, ncap * sizeof *n);
    if (!n) return NULL;
    s->ss = n;
    s->ss_cap = ncap;
  }
  uint64_t *slot = hka_map_slot(&s->ss_by_base, base);
  if (!slot) return NULL;
  *slot = ++s->nss;
  if (base != HKA_NONE) {           /* the map's empty key: found by no lookup */
    s->ss_cache[ss_cache_home(base)].base = base;
    s->ss_cache[ss_cache_home(base)].idx1 = s->nss;
  }
  hka_ss *ss = &s->ss[s->nss - 1];
  memset(ss, 0, sizeof *ss);
  ss->base = base;
  ss->size = size ? size : 1;
  ss->reg_seq = ss->unreg_seq = ss->reg_time = ss->unreg_time = HKA_NONE;
  ss->reg_tid = ss->unreg_tid = ss->invariant_tid = HKA_NO_TID;
  ss->invariant_seq = HKA_NONE;
  ss->last_drain_seq = 0;
  ss->cls = HKT_NO_CLASS;
  ss->parent_reg_seq = HKA_NONE;
  ss->parent_reg_tid = HKA_NO_TID;
  s->ss_lg_mask |= 1ULL << lg_ceil(ss->size);
  if (ss->size & (ss->size - 1)) s->ss_odd_size = 1;
  s->ss_lg_min = (unsigned)__builtin_ctzll(s->ss_lg_mask);
  ss_memo_clear(s);
  return ss;
}

hka_ss *hka_ss_new(hka_state *s, uint64_t base, uint64_t size) { return new_ss(s, base, size); }

static void add_holders(hka_ss *ss, uint32_t tid, uint32_t kind, uint64_t n) {
  for (uint32_t i = 0; i < ss->nholders; i++)
    if (ss->holders[i].tid == tid && ss->holders[i].kind == kind) {
      ss->holders[i].blocks += n;
      return;
    }
  if (ss->nholders < HKA_MAX_HOLDERS) {
    ss->holders[ss->nholders++] = (hka_holder){tid, kind, n};
    return;
  }
  ss->held_unattributed += n;
}
#define add_holder(ss, tid, kind) add_holders(ss, tid, kind, 1)

/* A SuperSlab was released while blocks of it were still held: find them.
 * Blocks the program holds are exact. A block the program freed since the
 * register and that was not reused is in a cache: the freeing thread's if
 * it freed locally and has not flushed that class since, the owner's remote
 * queue if it was pushed there after the last drain. Blocks a thread's
 * last refill from this SuperSlab brought into its cache and it has not
 * handed out yet are in that cache too. */
static void scan_holders(hka_state *s, hka_ss *ss, uint32_t idx1) {
  const hka_blocks *t = &s->blocks;
  uint64_t attributed = 0;
  ss->nholders = 0;
  ss->held_unattributed = 0;
  for (size_t i = 0; i < t->cap; i++) {
    const hka_block *b = &t->slot[i];
    if (b->state == HKA_B_EMPTY || b->ptr - ss->base >= ss->size) continue;
    if (b->state == HKA_B_LIVE) {
      if (b->ss == idx1) { add_holder(ss, b->alloc_tid, HKA_HOLD_LIVE); attributed++; }
      continue;
    }
    if (ss->reg_seq != HKA_NONE && b->free_seq < ss->reg_seq) continue;
    if (b->flags & HKA_BF_REMOTE) {
      if (b->free_seq > ss->last_drain_seq) { add_holder(ss, ss->owner, HKA_HOLD_REMOTE); attributed++; }
      continue;
    }
    const uint64_t *lf = hka_map_find(&s->last_flush, (uint64_t)b->free_tid << 16 | (b->cls & 0xffff));
    if (!lf || *lf < b->free_seq) { add_holder(ss, b->free_tid, HKA_HOLD_CACHE); attributed++; }
  }
  const hka_map *rf = &s->last_refill;
  for (size_t i = 0; i < rf->cap; i++) {
    if (rf->keys[i] == HKA_NONE) continue;
    uint64_t tid = rf->keys[i] >> 16, cls = rf->keys[i] & 0xffff, v = rf->vals[i];
    if (cls < 64 && tid < s->threads_cap && s->threads[tid].refill) v = s->threads[tid].refill[cls];
    if (v >> 32 != idx1 || !(v & 0xffffffffu)) continue;
    add_holders(ss, (uint32_t)tid, HKA_HOLD_CACHE, v & 0xffffffffu);
    attributed += v & 0xffffffffu;
  }
  uint64_t held = ss->reported_live > ss->live ? ss->reported_live : ss->live;
  if (held > attributed) ss->held_unattributed += held - attributed;
}

static int on_ss_register(hka_state *s, const hkt_event *ev) {
  hka_ss *ss = new_ss(s, ev->ptr, ev->size);
  if (!ss) return HKT_ERR_NOMEM;
  ss->id = ev->aux2;
  ss->cls = ev->cls;
  ss->owner = (uint32_t)ev->aux;
  ss->reg_seq = ev->seq;
  ss->reg_time = ev->time_ns;
  ss->reg_tid = ev->tid;
  hka_class *c = &s->cls[cls_index(ev->cls)];
  c->ss_reg++;
  if (++c->ss_live > c->ss_peak) c->ss_peak = c->ss_live;
  if (++s->ss_live > s->ss_peak) s->ss_peak = s->ss_live;
  hka_tl_raise(s);
  return 0;
}

static int on_ss_unregister(hka_state *s, const hkt_event *ev) {
  uint32_t idx1 = 0;
  const uint64_t *v = hka_map_find(&s->ss_by_base, ev->ptr);
  if (v) idx1 = (uint32_t)*v;
  if (!idx1 || s->ss[idx1 - 1].unreg_seq != HKA_NONE) {   /* never saw it registered */
    hka_ss *n = new_ss(s, ev->ptr, ev->size);
    if (!n) return HKT_ERR_NOMEM;
    n->id = ev->aux2;
    n->cls = ev->cls;
    n->owner = (uint32_t)ev->aux;
    idx1 = s->nss;
    hka_class *c = &s->cls[cls_index(ev->cls)];
    c->ss_live++;
    s->ss_live++;
  }
  hka_ss *ss = &s->ss[idx1 - 1];
  ss->unreg_seq = ev->seq;
  ss->unreg_time = ev->time_ns;
  ss->unreg_tid = ev->tid;
  ss->reported_live = ev->aux3;
  ss->live_at_unreg = ss->live;
  hka_class *c = &s->cls[cls_index(ss->cls)];
  c->ss_unreg++;
  if (c->ss_live) c->ss_live--;
  if (s->ss_live) s->ss_live--;
  if ((ss->live || ss->reported_live) && s->holder_scans < MAX_HOLDER_SCANS) {
    s->holder_scans++;
    scan_holders(s, ss, idx1);
  }
  return 0;
}

/* ---- correlations ------------------------------------------------------- */

static hka_corr *add_corr(hka_state *s, const hkt_event *ev, const char *kind,
                          uint32_t detect, uint64_t ptr, const hka_block *b, uint32_t ss1) {
  if (s->tl.n) s->tl.b[s->tl.n - 1].detections++;
  if (ss1) s->ss[ss1 - 1].detections++;
  if (s->ncorr >= HKA_MAX_CORR) { s->corr_dropped++; return NULL; }
  if (s->ncorr == s->corr_cap) {
    uint32_t ncap = s->corr_cap ? s->corr_cap * 2 : 16;
    hka_corr *n = realloc(s->corr, ncap * sizeof *n);
    if (!n) { s->corr_dropped++; return NULL; }
    s->corr = n;
    s->corr_cap = ncap;
  }
  hka_corr *c = &s->corr[s->ncorr++];
  memset(c, 0, sizeof *c);
  c->seq = ev->seq;
  c->time_ns = ev->time_ns;
  c->tid = ev->tid;
  c->detect = detect;
  c->kind = kind;
  c->ptr = ptr;
  c->caller = ev->caller;
  c->free_seq = HKA_NONE;
  if (b && b->state != HKA_B_EMPTY) { c->have_block = 1; c->block = *b; }
  c->ss = ss1;
  c->ss_registered = ss1 && s->ss[ss1 - 1].unreg_seq == HKA_NONE;
  return c;
}

static int free_detection(uint32_t det) {
  return det == HKT_DET_INVALID_FREE || det == HKT_DET_INTERIOR_FREE || det == HKT_DET_DOUBLE_FREE ||
         det == HKT_DET_STALE_FREE;
}

static int on_detection(hka_state *s, const hkt_event *ev) {
  uint32_t det = ev->fn;
  s->detect_counts[det < HKT_DET__COUNT ? det : HKT_DET__COUNT]++;
  const char *kind = det && det < HKT_DET__COUNT ? hkt_detect_name(det) : "unknown_detection";
  /* A free the analysis took for one of a block from before the trace,
   * which the allocator (it saw the real heap) found bad before the
   * thread's next call: not inherited after all. */
  uint64_t free_seq = HKA_NONE;
  hka_thread *t = s->inh.unknown_ok && ev->ptr && free_detection(det) ? thread_of(s, ev->tid) : NULL;
  if (t && t->inh_ptr == ev->ptr && t->inh_calls == t->allocs + t->frees) {
    s->inh.unknown_frees--;
    t->inh_ptr = 0;
    free_seq = t->inh_seq;
  }
  /* The detection of a bad free follows its FREE event (same thread, same
   * pointer), which the analysis may already have flagged: one entry. */
  if (s->ncorr && free_seq == HKA_NONE) {
    hka_corr *last = &s->corr[s->ncorr - 1];
    if (!last->detect && last->ptr == ev->ptr && last->tid == ev->tid && last->seq < ev->seq) {
      last->free_seq = last->seq;
      last->seq = ev->seq;
      last->time_ns = ev->time_ns;
      last->detect = det;
      last->kind = kind;
      last->extra = ev->aux2;
      return 0;
    }
  }
  uint32_t ss1 = 0;
  if (ev->aux) {
    const uint64_t *v = hka_map_find(&s->ss_by_base, ev->aux);
    if (v) ss1 = (uint32_t)*v;
  }
  if (!ss1 && ev->ptr) ss1 = ss_index(s, ev->ptr);
  const hka_block *b = ev->ptr ? hka_blocks_find(&s->blocks, ev->ptr) : NULL;
  if (det == HKT_DET_SS_INVARIANT && ss1) {
    /* a release with blocks still held, stopped (or about to go on):
     * who holds them now; aux2 is the allocator's count */
    hka_ss *ss = &s->ss[ss1 - 1];
    ss->invariant_seq = ev->seq;
    ss->invariant_tid = ev->tid;
    if (ss->unreg_seq == HKA_NONE) {
      ss->reported_live = ev->aux2;
      ss->live_at_unreg = ss->live;
    }
    if (s->holder_scans < MAX_HOLDER_SCANS) {
      s->holder_scans++;
      scan_holders(s, ss, ss1);
    }
    b = NULL;                       /* ptr names the SuperSlab, not a block */
  }
  hka_corr *c = add_corr(s, ev, kind, det, ev->ptr, b, ss1);
  if (c) { c->extra = ev->aux2; c->free_seq = free_seq; }
  return 0;
}

/* ---- last refill per (thread, class) -------------------------------------- */

/* last_refill's value for (tid, cls): in the thread's small array when it
 * has one (a thread record and cls < 64), else in the map. NULL: none yet
 * (an array slot reads 0, which every use treats as none). */
static inline uint64_t *refill_find(hka_state *s, hka_thread *t, uint32_t tid, uint32_t cls) {
  if (t && (cls & 0xffff) < 64) return t->refill ? &t->refill[cls & 0xffff] : NULL;
  return hka_map_find(&s->last_refill, (uint64_t)tid << 16 | (cls & 0xffff));
}

/* The value slot for (tid, cls), its key entered in the map in any case:
 * scan_holders walks the keys in the map's order. */
static uint64_t *refill_slot(hka_state *s, hka_thread *t, uint32_t tid, uint32_t cls) {
  uint64_t *v = hka_map_slot(&s->last_refill, (uint64_t)tid << 16 | (cls & 0xffff));
  if (!v || !t || (cls & 0xffff) >= 64) return v;
  if (!t->refill && !(t->refill = calloc(64, sizeof *t->refill))) return NULL;
  return &t->refill[cls & 0xffff];
}

/* ---- allocations and frees ---------------------------------------------- */

static void note_peak(hka_state *s, const hkt_event *ev) {
  if (s->live_bytes > s->peak_bytes) {
    s->peak_bytes = s->live_bytes;
    s->peak_bytes_seq = ev->seq;
    s->peak_bytes_time = ev->time_ns;
    s->peak_bytes_blocks = s->live_blocks;
  }
  if (s->live_blocks > s->peak_blocks) {
    s->peak_blocks = s->live_blocks;
    s->peak_blocks_seq = ev->seq;
  }
}

/* Take a live block out of the program's accounting. */
static inline void drop_live(hka_state *s, hka_block *b) {
  s->live_blocks--;
  s->live_bytes -= b->size;
  s->blocks.live--;
  hka_class *c = &s->cls[cls_index(b->cls)];
  c->live--;
  c->live_bytes -= b->size;
  if (b->ss && s->ss[b->ss - 1].live) s->ss[b->ss - 1].live--;
}

/* The same for a block inherited from the parent (HKA_BF_PARENT): it is in
 * none of the trace's own counts. */
static void drop_parent(hka_state *s, hka_block *b) {
  s->blocks.live--;
  if (b->ss && s->ss[b->ss - 1].live) s->ss[b->ss - 1].live--;
}

/* t: the event's thread record, NULL when it has none (thread_of).
 * Inline into the batch loop for a malloc (on_alloc for the rest). */
static inline __attribute__((always_inline)) int alloc_inl(hka_state *s, hka_thread *t, const hkt_event *ev, uint64_t ptr, uint64_t size) {
  if (!ptr) { s->failed_allocs++; return 0; }
  if (size >= (1ULL << 40)) size = (1ULL << 40) - 1;   /* what a block record holds */
  if (t) { t->allocs++; t->bytes += size; }
  s->allocs++;
  s->alloc_bytes += size;
  hka_block *b = hka_blocks_get(&s->blocks, ptr);
  if (!b) return HKT_ERR_NOMEM;
  uint32_t ss1 = ss_index_memo(s, ptr);
  int unreg = ss1 && s->ss[ss1 - 1].unreg_seq != HKA_NONE;
  if (b->state == HKA_B_LIVE) {   /* handed out twice */
    add_corr(s, ev, "alloc_of_live", 0, ptr, b, ss1);
    if (b->flags & HKA_BF_PARENT) drop_parent(s, b);
    else drop_live(s, b);
  } else if (unreg) {
    add_corr(s, ev, "alloc_unregistered", 0, ptr, b, ss1);
  }
  if (b->state != HKA_B_FREED) {     /* keep the last free as "the one before" */
    b->free_seq = HKA_NONE;
    b->free_caller = 0;
    b->free_tid = HKA_NO_TID;
  } else {
    s->blocks.ghosts--;
  }
  b->size = size;
  b->alloc_seq = ev->seq;
  b->alloc_caller = ev->caller;
  b->alloc_tid = ev->tid;
  b->stack_id = ev->stack_id;
  b->ss = ss1;
  b->cls = ev->cls < 64 ? ev->cls : HKT_NO_CLASS;
  b->state = HKA_B_LIVE;
  b->flags = 0;
  s->blocks.live++;

  s->live_blocks++;
  s->live_bytes += size;
  hka_class *c = &s->cls[cls_index(ev->cls)];
  c->allocs++;
  c->bytes += size;
  c->live++;
  c->live_bytes += size;
  if (c->live > c->peak_live) c->peak_live = c->live;
  if (c->live_bytes > c->peak_live_bytes) c->peak_live_bytes = c->live_bytes;
  if (ss1) {
    hka_ss *ss = &s->ss[ss1 - 1];
    ss->allocs++;
    uint64_t *rf = s->last_refill.n ? refill_find(s, t, ev->tid, ev->cls) : NULL;
    if (rf) {                       /* one block fewer left of that refill, without a branch */
      uint64_t v = *rf;
      *rf = v - (uint64_t)((v >> 32 == ss1) & ((v & 0xffffffffu) != 0));
    }
    if (++ss->live > ss->peak_live) { ss->peak_live = ss->live; ss->peak_seq = ev->seq; }
  }
  note_peak(s, ev);
  hka_tl_raise(s);
  return 0;
}

/* In a trace that starts in a running process, a free (or realloc) of an
 * address that no allocation of the trace made and that no SuperSlab it
 * registered holds: a block from before the trace, not an invalid free.
 * Counted; on_detection undoes it when the allocator reports that free.
 * Not when the parent's trace gave the whole heap at the fork (inherit.c):
 * then such a free is an invalid_free, as in any trace. */
static __attribute__((noinline)) int unknown_inherited_free(hka_state *s, hka_thread *t, const hkt_event *ev,
                                                            uint64_t ptr) {
  s->inh.unknown_frees++;
  if (t) { t->inh_ptr = ptr; t->inh_seq = ev->seq; t->inh_calls = t->allocs + t->frees; }
  return 0;
}

/* A live block the parent allocated before the fork, freed here: it leaves
 * the inherited set (not the trace's own counts) and stays as a ghost with
 * its history, so a second free is a double_free. unreg_ss1: its
 * SuperSlab when no longer registered. */
static __attribute__((noinline)) int parent_free(hka_state *s, const hkt_event *ev, hka_block *b, uint32_t unreg_ss1) {
  if (unreg_ss1) add_corr(s, ev, "free_unregistered", 0, b->ptr, b, unreg_ss1);
  s->inh.freed++;
  s->inh.freed_bytes += b->size;
  if (b->ss) s->ss[b->ss - 1].frees++;
  drop_parent(s, b);
  b->state = HKA_B_FREED;
  b->free_seq = ev->seq;
  b->free_tid = ev->tid;
  b->free_caller = ev->caller;
  b->flags = HKA_BF_PARENT;
  s->blocks.ghosts++;
  return hka_blocks_maybe_trim(&s->blocks);
}

static inline __attribute__((always_inline)) int free_inl(hka_state *s, hka_thread *t, const hkt_event *ev, uint64_t ptr) {
  if (t) t->frees++;
  hka_block *b = hka_blocks_find(&s->blocks, ptr);
  uint32_t ss1;
  if (b && b->state == HKA_B_LIVE && b->ss && s->ss[b->ss - 1].unreg_seq == HKA_NONE)
    ss1 = b->ss;                    /* the common case: no lookup */
  else
    ss1 = ss_index_memo(s, ptr);
  int unreg = ss1 && s->ss[ss1 - 1].unreg_seq != HKA_NONE;
  if (!b || b->state != HKA_B_LIVE) {
    if (!b && !ss1 && s->inh.unknown_ok) return unknown_inherited_free(s, t, ev, ptr);
    const char *kind = unreg ? "free_unregistered"
                     : b && b->state == HKA_B_FREED ? "double_free" : "invalid_free";
    add_corr(s, ev, kind, 0, ptr, b, ss1);
    return 0;
  }
  if (b->flags) return parent_free(s, ev, b, unreg ? ss1 : 0);   /* a live block's only flag */
  if (unreg) add_corr(s, ev, "free_unregistered", 0, ptr, b, ss1);

  s->frees++;
  s->free_bytes += b->size;
  hka_class *c = &s->cls[cls_index(b->cls)];
  c->frees++;
  c->freed_bytes += b->size;
  if (b->ss) s->ss[b->ss - 1].frees++;
  drop_live(s, b);
  if ((b->alloc_tid | ev->tid) < 16) {
    s->xt_small[b->alloc_tid][ev->tid]++;
  } else if (b->alloc_tid == ev->tid) {
    s->same_thread_frees++;
  } else {
    s->cross_thread_frees++;
    uint64_t *n = hka_map_slot(&s->xthread, (uint64_t)b->alloc_tid << 32 | ev->tid);
    if (!n) return HKT_ERR_NOMEM;
    ++*n;
  }
  b->state = HKA_B_FREED;
  b->free_seq = ev->seq;
  b->free_tid = ev->tid;
  b->free_caller = ev->caller;
  b->flags = 0;
  s->blocks.ghosts++;
  return hka_blocks_maybe_trim(&s->blocks);   /* b is invalid past here */
}

static __attribute__((noinline)) int on_alloc(hka_state *s, hka_thread *t, const hkt_event *ev,
                                              uint64_t ptr, uint64_t size) {
  return alloc_inl(s, t, ev, ptr, size);
}
static __attribute__((noinline)) int on_free(hka_state *s, hka_thread *t, const hkt_event *ev, uint64_t ptr) {
  return free_inl(s, t, ev, ptr);
}

/* ---- the event switch --------------------------------------------------- */

/* One event; inline into the batch loop (hka_events), which also counts
 * it (s->events, s->last_seq: read by nothing during the pass). */
static inline __attribute__((always_inline)) int apply(hka_state *s, const hkt_event *ev) {
  hka_tl_begin(s, ev->seq, ev->time_ns);          /* before last_time moves: see analyze.h */
  uint64_t lt = s->last_time;         /* a running max, without a branch */
  s->last_time = ev->time_ns > lt ? ev->time_ns : lt;
  hka_thread *t = thread_of(s, ev->tid);   /* NULL for HKA_NO_TID too (past MAX_TID) */

  /* the two kinds most events are, tested before the switch: two
   * conditional branches predict better than its indirect jump */
  if (ev->kind == HKT_EV_FREE) {
    s->by_kind[HKT_EV_FREE]++;
    return ev->ptr ? free_inl(s, t, ev, ev->ptr) : 0;
  }
  if (ev->kind == HKT_EV_MALLOC) {
    s->by_kind[HKT_EV_MALLOC]++;
    return alloc_inl(s, t, ev, ev->ptr, ev->size);
  }
  s->by_kind[ev->kind < HKT_EV__COUNT ? ev->kind : HKT_EV__COUNT]++;
  int rc = 0;
  switch (ev->kind) {
  case HKT_EV_ALIGNED:
    return on_alloc(s, t, ev, ev->ptr, ev->size);
  case HKT_EV_CALLOC:
    return on_alloc(s, t, ev, ev->ptr, ev->size * ev->aux);
  case HKT_EV_REALLOC:
    /* the old block goes when the call succeeded or was a free (size 0) */
    if (ev->aux && (ev->ptr || ev->size == 0)) rc = on_free(s, t, ev, ev->aux);
    if (!HKT_IS_ERR(rc) && ev->ptr) rc = on_alloc(s, t, ev, ev->ptr, ev->size);
    else if (!ev->ptr && ev->size) s->failed_allocs++;
    return rc;
  default:
    break;
  }

  hka_class *c = &s->cls[cls_index(ev->cls)];
  switch (ev->kind) {
  case HKT_EV_THREAD_START:
    if (t) { t->os_tid = ev->aux; t->start_seq = ev->seq; }
    break;
  case HKT_EV_THREAD_EXIT:
    if (t) t->exit_seq = ev->seq;
    break;
  case HKT_EV_SS_REGISTER:
    rc = on_ss_register(s, ev);
    break;
  case HKT_EV_SS_UNREGISTER:
    rc = on_ss_unregister(s, ev);
    break;
  case HKT_EV_REMOTE_PUSH: {
    c->remote_pushes++;
    hka_block *b = hka_blocks_find(&s->blocks, ev->ptr);
    if (b && b->state == HKA_B_FREED) b->flags |= HKA_BF_REMOTE;
    uint32_t i = ss_lookup(s, ev->aux);
    if (i) s->ss[i - 1].remote_pushes++;
    break;
  }
  case HKT_EV_REMOTE_DRAIN: {
    c->drains++;
    c->drained_blocks += ev->size;
    uint32_t i = ss_lookup(s, ev->aux);
    if (i) { s->ss[i - 1].drains++; s->ss[i - 1].last_drain_seq = ev->seq; }
    break;
  }
  case HKT_EV_CACHE_REFILL: {
    c->refills++;
    c->refill_blocks += ev->size;
    uint64_t i = ss_lookup(s, ev->aux);
    if (i) s->ss[i - 1].refills++;
    uint64_t *rf = refill_slot(s, t, ev->tid, ev->cls);
    if (!rf) return HKT_ERR_NOMEM;
    *rf = i ? i << 32 | (ev->size < 0xffffffffu ? ev->size : 0xffffffffu) : 0;
    break;
  }
  case HKT_EV_CACHE_FLUSH: {
    c->flushes++;
    c->flush_blocks += ev->size;
    uint64_t *v = hka_map_slot(&s->last_flush, (uint64_t)ev->tid << 16 | (ev->cls & 0xffff));
    if (!v) return HKT_ERR_NOMEM;
    *v = ev->seq;
    uint64_t *rf = refill_find(s, t, ev->tid, ev->cls);
    if (rf) *rf = 0;                /* what is left of it is assumed flushed */
    break;
  }
  case HKT_EV_SS_ADOPT: {
    uint32_t i = ss_lookup(s, ev->ptr);
    if (i) { s->ss[i - 1].adopts++; s->ss[i - 1].owner = ev->tid; }
    break;
  }
  case HKT_EV_LARGE_MAP:
    s->large_maps++;
    s->large_mapped += ev->size;
    if (s->large_mapped > s->large_peak_mapped) s->large_peak_mapped = s->large_mapped;
    break;
  case HKT_EV_LARGE_UNMAP:
    s->large_unmaps++;
    s->large_mapped -= ev->size < s->large_mapped ? ev->size : s->large_mapped;
    break;
  case HKT_EV_MODULE_LOAD:
    rc = add_module(s, ev->str, ev->ptr, ev->size, ev->bid, ev->bid_len);
    break;
  case HKT_EV_MARK:
    s->markers++;
    break;
  case HKT_EV_DETECTION:
    rc = on_detection(s, ev);
    break;
  case HKT_EV_END:
    s->end_seen = 1;
    s->end_how = ev->fn;
    s->end_code = ev->aux;
    break;
  default:
    break;
  }
  return rc;
}

/* Whether the trace starts in a running process (a forked child): its
 * first event of a program thread (the recorder's MODULE_LOADs aside) is
 * not a THREAD_START. Decided before that event is applied. */
static void note_start(hka_state *s, const hkt_event *ev, int n) {
  for (int i = 0; i < n; i++) {
    if (ev[i].tid == HKT_TID_RECORDER) continue;
    s->inh.started = 1;
    if (ev[i].kind != HKT_EV_THREAD_START) s->inh.heap = 1;
    s->inh.unknown_ok = s->inh.heap && !s->inh.parent_whole;
    return;
  }
}

int hka_event(hka_state *s, const hkt_event *ev) {
  if (!s->inh.started) note_start(s, ev, 1);
  if (s->first_seq == HKA_NONE) s->first_seq = ev->seq;
  s->events++;
  s->last_seq = ev->seq;
  return apply(s, ev);
}

#define AHEAD 64                    /* the prefetch distance, in events */

/* The block address an event will look up, 0 if none; without branches
 * (a switch here mispredicts as often as the one in apply). */
#define BLOCK_KINDS (1u << HKT_EV_MALLOC | 1u << HKT_EV_CALLOC | 1u << HKT_EV_ALIGNED | \
                     1u << HKT_EV_FREE | 1u << HKT_EV_REMOTE_PUSH | 1u << HKT_EV_REALLOC)
_Static_assert(HKT_EV__COUNT <= 32, "kinds fit a 32-bit mask");
static inline uint64_t block_of(const hkt_event *ev) {
  unsigned k = ev->kind;
  uint64_t p = ev->kind == HKT_EV_REALLOC && ev->aux ? ev->aux : ev->ptr;
  return k < 32 && (BLOCK_KINDS >> k & 1) ? p : 0;
}

/* The block table is far bigger than the cache and a miss per event would
 * dominate: each event's slot is prefetched AHEAD events early, and the
 * event lines themselves (written on the decoder's core) twice that. */
int hka_events(hka_state *s, const hkt_event *ev, int n) {
  if (!s->inh.started) note_start(s, ev, n);
  if (n > 0 && s->first_seq == HKA_NONE) s->first_seq = ev[0].seq;
  for (int i = 0; i < n && i < AHEAD; i++) {
    uint64_t p = block_of(&ev[i]);
    if (p) hka_blocks_prefetch(&s->blocks, p);
  }
  for (int i = 0; i < n; i++) {
    if (i + 2 * AHEAD < n) __builtin_prefetch(&ev[i + 2 * AHEAD]);
    if (i + AHEAD < n) {
      uint64_t p = block_of(&ev[i + AHEAD]);
      if (p) hka_blocks_prefetch(&s->blocks, p);
    }
    int rc = apply(s, &ev[i]);
    if (HKT_IS_ERR(rc)) { s->events += (uint64_t)i + 1; s->last_seq = ev[i].seq; return rc; }
  }
  if (n > 0) { s->events += (uint64_t)n; s->last_seq = ev[n - 1].seq; }
  return 0;
}

/* ---- the end ------------------------------------------------------------ */

static int leak_cmp(const void *a, const void *b) {
  const hka_leak *x = a, *y = b;
  if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
  if (x->blocks != y->blocks) return x->blocks < y->blocks ? 1 : -1;
  return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

int hka_finish(hka_state *s, hkt_reader *r, int rc) {
  s->read_error = HKT_IS_ERR(rc) ? rc : 0;
  if (s->read_error) {
    const char *m = r ? hkt_reader_errmsg(r) : NULL;
    s->read_errmsg = dupstr(m && *m ? m : hkt_strerror(rc));
  }
  s->complete = r && !s->read_error && hkt_reader_complete(r);
  hka_tl_close(s);
  for (uint32_t a = 0; a < 16; a++)   /* the small tids' frees, counted apart (free_inl) */
    for (uint32_t f = 0; f < 16; f++) {
      uint64_t k = s->xt_small[a][f];
      if (!k) continue;
      s->xt_small[a][f] = 0;
      if (a == f) { s->same_thread_frees += k; continue; }
      s->cross_thread_frees += k;
      uint64_t *v = hka_map_slot(&s->xthread, (uint64_t)a << 32 | f);
      if (!v) return HKT_ERR_NOMEM;
      *v += k;
    }

  hka_map by_caller = {0};
  uint32_t cap = 0;
  for (size_t i = 0; i < s->blocks.cap; i++) {
    const hka_block *b = &s->blocks.slot[i];
    if (b->state != HKA_B_LIVE) continue;
    if (b->flags & HKA_BF_PARENT) {   /* the parent's: its own trace reports them */
      s->inh.live_end++;
      s->inh.live_end_bytes += b->size;
      continue;
    }
    uint64_t *v = hka_map_slot(&by_caller, b->alloc_caller);
    if (!v) { hka_map_free(&by_caller); return HKT_ERR_NOMEM; }
    if (!*v) {
      if (s->nleaks == cap) {
        cap = cap ? cap * 2 : 64;
        hka_leak *n = realloc(s->leaks, cap * sizeof *n);
        if (!n) { hka_map_free(&by_caller); return HKT_ERR_NOMEM; }
        s->leaks = n;
      }
      hka_leak *l = &s->leaks[s->nleaks];
      memset(l, 0, sizeof *l);
      l->caller = b->alloc_caller;
      l->first_seq = HKA_NONE;
      *v = ++s->nleaks;
    }
    hka_leak *l = &s->leaks[*v - 1];
    l->blocks++;
    l->bytes += b->size;
    if (b->alloc_seq < l->first_seq) {
      l->first_seq = b->alloc_seq;
      l->stack_id = b->stack_id;
      l->tid = b->alloc_tid;
    }
    s->leak_blocks++;
    s->leak_bytes += b->size;
  }
  hka_map_free(&by_caller);
  if (s->nleaks) qsort(s->leaks, s->nleaks, sizeof *s->leaks, leak_cmp);
  s->finished = 1;
  return 0;
}

static int same_line(const hka_sym *a, const hka_sym *b) {
  return a->function && b->function && a->file && b->file && a->line && a->line == b->line &&
         !strcmp(a->function, b->function) && !strcmp(a->file, b->file);
}

void hka_leaks_symbolize(hka_state *s, hka_symbolizer *z) {
  for (uint32_t i = 0; i < s->nleaks; i++) hka_sym_lookup(z, s->leaks[i].caller, &s->leaks[i].sym);
  /* two return addresses on one source line are one callsite */
  uint32_t n = 0;
  for (uint32_t i = 0; i < s->nleaks; i++) {
    uint32_t j = 0;
    while (j < n && !same_line(&s->leaks[j].sym, &s->leaks[i].sym)) j++;
    if (j < n) {
      hka_leak *d = &s->leaks[j], *l = &s->leaks[i];
      d->blocks += l->blocks;
      d->bytes += l->bytes;
      if (l->first_seq < d->first_seq) { d->first_seq = l->first_seq; d->stack_id = l->stack_id; d->tid = l->tid; }
    } else {
      s->leaks[n++] = s->leaks[i];
    }
  }
  s->nleaks = n;
  if (n) qsort(s->leaks, n, sizeof *s->leaks, leak_cmp);
}

const char *hka_end_text(const hka_state *s, char *buf, size_t n) {
  if (s->end_seen && s->end_how == HKT_END_EXIT)
    snprintf(buf, n, "exit %llu", (unsigned long long)s->end_code);
  else if (s->end_seen && s->end_how == HKT_END_SIGNAL)
    snprintf(buf, n, "signal %llu (%s)", (unsigned long long)s->end_code,
             strsignal((int)s->end_code) ? strsignal((int)s->end_code) : "?");
  else
    snprintf(buf, n, "unknown");
  return buf;
}

void hka_free(hka_state *s) {
  free(s->cmdline);
  free(s->clock);
  free(s->config);
  free(s->parent_trace);
  free(s->inh.parent_path);
  free(s->inh.parent_note);
  for (uint32_t i = 0; i < s->nmodules; i++) free(s->modules[i].path);
  free(s->modules);
  free(s->read_errmsg);
  for (uint32_t i = 0; i < s->threads_cap; i++) free(s->threads[i].refill);
  free(s->threads);
  hka_blocks_free(&s->blocks);
  free(s->ss);
  hka_map_free(&s->ss_by_base);
  hka_map_free(&s->xthread);
  hka_map_free(&s->last_flush);
  hka_map_free(&s->last_refill);
  free(s->corr);
  free(s->leaks);
  memset(s, 0, sizeof *s);
}
