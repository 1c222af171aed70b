/* debug.c — HAKMEM_DEBUG checks and the one way detections are reported.
 *
 * debug.h has the ladder. Here: two side tables indexed by arena chunk
 * (1 MiB), mapped on first use with _hak_os_alloc_meta (zero, lazily
 * committed, never from the heap):
 *   hist  always: the SuperSlab last registered at that chunk, by whom and
 *         at which seq, and whether and when it was unregistered, so that a
 *         stale pointer can be told apart from a foreign one and named;
 *   meta  when debugging: one state byte and one requested size per block.
 * The state byte is the truth the checks compare against: a block is FRESH
 * (never handed out since its SuperSlab was registered), USED (the program
 * holds it), FREE (freed: in a cache, on a freelist or in a remote queue) or
 * QUAR (freed, waiting in a quarantine). Any thread may free, so the byte is
 * read and written with relaxed atomics; only the owner hands blocks out. */
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define POISON   0xddu
#define CANARY   0xcau
#define POISON64 0xddddddddddddddddull
#define LINK_SKIP sizeof(void *)     /* the allocator's own link lives here in a free block */
/* The most blocks any SuperSlab holds: 8-byte blocks in 1 MiB. */
#define MAX_BLOCKS (((1u << HAK_SS_LG_TINY) - HAK_SS_HEADER) / 8)

typedef struct ss_hist {
  uint64_t base, reg_seq, unreg_seq;
  uint32_t id, reg_tid, unreg_tid;
  uint16_t cls;
  uint8_t lg, gone;
} ss_hist;

typedef struct dbg_meta {
  uint32_t hi;                       /* blocks [hi, ...) were never handed out: nothing to reset */
  _Atomic uint8_t state[MAX_BLOCKS];
  uint32_t req[MAX_BLOCKS];          /* requested size (level 2+) */
} dbg_meta;

static ss_hist *hist;                /* per chunk; written under the global lock */
static dbg_meta **meta;              /* per chunk (a SuperSlab's first) */

static inline uint64_t chunk_of(const void *p) {
  return (uint64_t)((const char *)p - _hak_arena.ss_base) >> HAK_CHUNK_LG;
}

/* ---- SuperSlab history ------------------------------------------------- */

static int tables_ready(void) {
  uint64_t n = _hak_arena.ss_size >> HAK_CHUNK_LG;
  if (!hist && !(hist = _hak_os_alloc_meta(n * sizeof *hist))) return 0;
  if (_hak_cfg.debug && !meta && !(meta = _hak_os_alloc_meta(n * sizeof *meta))) return 0;
  return 1;
}

void _hak_dbg_ss_registered(hak_ss *ss, uint64_t seq) {
  if (!tables_ready()) return;
  uint64_t c = chunk_of(ss);
  ss_hist r = {.base = (uint64_t)(uintptr_t)ss, .reg_seq = seq, .unreg_seq = HAK_NO_SEQ,
               .id = ss->id, .reg_tid = ss->reg_tid, .cls = ss->cls, .lg = ss->lg_size};
  for (unsigned i = 0; i < (1u << (ss->lg_size - HAK_CHUNK_LG)); i++) hist[c + i] = r;
  if (!_hak_cfg.debug) return;
  if (!meta[c]) meta[c] = _hak_os_alloc_meta(sizeof(dbg_meta));
  else { memset((void *)meta[c]->state, HAK_BLK_FRESH, meta[c]->hi); meta[c]->hi = 0; }
  if (meta[c]) ss->dbg_state = meta[c]->state;
}

void _hak_dbg_ss_unregistered(const hak_ss *ss, uint32_t tid, uint64_t seq) {
  if (!hist) return;
  uint64_t c = chunk_of(ss);
  for (unsigned i = 0; i < (1u << (ss->lg_size - HAK_CHUNK_LG)); i++) {
    hist[c + i].gone = 1;
    hist[c + i].unreg_tid = tid;
    hist[c + i].unreg_seq = seq;
  }
  /* The fast paths (heap.c) do not keep `hi`: every block they saw was
   * carved, so the carved ones are all that may need a reset. */
  if (meta && meta[c] && ss->carved > meta[c]->hi) meta[c]->hi = ss->carved;
}

/* ---- reporting --------------------------------------------------------- */

static const char *seq_str(char *buf, size_t n, uint64_t seq) {
  if (seq == HAK_NO_SEQ) return "-";
  _hak_fmt(buf, n, "%llu", (unsigned long long)seq);
  return buf;
}

static const char *tid_str(char *buf, size_t n, uint32_t tid) {
  if (tid >= HAK_NO_OWNER - 1) return "none";
  _hak_fmt(buf, n, "%u", tid);
  return buf;
}

/* "SuperSlab #3 class 3 (64 B) base 0x..., registered at seq 17 by thread 1,
 * owned by thread 1" or "... unregistered at seq 90 by thread 2". */
static void describe_ss(char *out, size_t n, const void *p, const hak_ss *ss) {
  char s1[24], s2[24], t1[16], t2[16];
  const ss_hist *h = NULL;
  if (hist && _hak_arena.ss_base && (uint64_t)((const char *)p - _hak_arena.ss_base) < HAK_RD(_hak_arena.ss_top))
    h = &hist[chunk_of(p)];
  if (h && !h->id) h = NULL;
  if (ss && ss->magic == HAK_SS_MAGIC) {
    _hak_fmt(out, n, "SuperSlab #%u class %u (%u B) base %p, registered at seq %s by thread %s, owned by thread %s",
             ss->id, ss->cls, ss->block_size, (const void *)ss,
             seq_str(s1, sizeof s1, h && h->id == ss->id ? h->reg_seq : HAK_NO_SEQ),
             tid_str(t1, sizeof t1, ss->reg_tid), tid_str(t2, sizeof t2, HAK_RD(ss->owner)));
  } else if (h && h->gone) {
    _hak_fmt(out, n, "SuperSlab #%u class %u (%u B) base %p, registered at seq %s by thread %s, "
             "UNREGISTERED at seq %s by thread %s",
             h->id, h->cls, h->cls < HAK_CLASSES ? _hak_cls_size[h->cls] : 0, (void *)(uintptr_t)h->base,
             seq_str(s1, sizeof s1, h->reg_seq), tid_str(t1, sizeof t1, h->reg_tid),
             seq_str(s2, sizeof s2, h->unreg_seq), tid_str(t2, sizeof t2, h->unreg_tid));
  } else if (_hak_in_large(p)) {
    _hak_fmt(out, n, "in the large-block region");
  } else {
    _hak_fmt(out, n, "in no SuperSlab hakmem ever had");
  }
}

uint64_t _hak_detect_emit(unsigned det, const void *p, const hak_ss *ss, uint64_t aux2) {
  if (ss && ss->magic != HAK_SS_MAGIC) ss = NULL;
  if (!HAK_REC_ON()) return HAK_NO_SEQ;
  uint64_t base = ss ? (uint64_t)(uintptr_t)ss : 0;
  unsigned cls = ss ? ss->cls : HKT_NO_CLASS;
  if (!ss && hist && (uint64_t)((const char *)p - _hak_arena.ss_base) < HAK_RD(_hak_arena.ss_top)) {
    const ss_hist *h = &hist[chunk_of(p)];
    if (h->id) { base = h->base; cls = h->cls; }
  }
  hkt_event ev = {.kind = HKT_EV_DETECTION, .fn = (uint16_t)det, .tid = _hak_tls_idx, .cls = cls,
                  .ptr = (uint64_t)(uintptr_t)p, .aux = base, .aux2 = aux2, .seq = HAK_NO_SEQ};
  _hak_emit(&ev);
  return ev.seq;
}

void _hak_detect_where(char *out, size_t n, const void *p, const hak_ss *ss) {
  describe_ss(out, n, p, ss && ss->magic == HAK_SS_MAGIC ? ss : NULL);
}

void _hak_detect_report(unsigned det, const void *p, const hak_ss *ss, const char *what, uint64_t seq,
                        const char *where_given) {
  char where[256], s[24], t[16];
  if (where_given) _hak_fmt(where, sizeof where, "%s", where_given);
  else _hak_detect_where(where, sizeof where, p, ss);
  if (!strncmp(what, "free(): ", 8))   /* glibc's words first, as users grep for them */
    _hak_msg("%s %p (%s, seq %s, thread %s); %s", what, p, hkt_detect_name(det),
             seq_str(s, sizeof s, seq), tid_str(t, sizeof t, _hak_tls_idx), where);
  else
    _hak_msg("%s at %p (seq %s, thread %s): %s; %s", hkt_detect_name(det), p,
             seq_str(s, sizeof s, seq), tid_str(t, sizeof t, _hak_tls_idx), what, where);
  if (!_hak_cfg.on_error_continue) abort();
}

void _hak_detect(unsigned det, const void *p, const hak_ss *ss, uint64_t aux2, const char *what) {
  _hak_detect_report(det, p, ss, what, _hak_detect_emit(det, p, ss, aux2), NULL);
}

/* ---- block state ------------------------------------------------------- */

/* The side-table slot of p, if p is at a block boundary of a live
 * SuperSlab (carved or not). No division: the SuperSlab's shift or
 * reciprocal, as _hak_block_index. */
static inline int locate(const hak_ss *ss, const void *p, dbg_meta **m, uint32_t *idx) {
  if (!ss || ss->magic != HAK_SS_MAGIC || !meta) return 0;
  dbg_meta *mm = meta[chunk_of(ss)];
  uint64_t off = (uint64_t)((const char *)p - ss->blocks), i;
  if (!mm || (const char *)p < ss->blocks) return 0;
  if (likely(ss->pow2)) {
    if (off & ss->block_mask) return 0;
    i = off >> __builtin_ctz(ss->block_size);
  } else {
    i = (off * ss->recip) >> 32;
    if (i * ss->block_size != off) return 0;
  }
  if (i >= ss->capacity) return 0;
  *m = mm;
  *idx = (uint32_t)i;
  return 1;
}

/* Offset of the first byte in [from, to) of p that is not `val`, or -1. */
static int64_t first_changed(const unsigned char *p, size_t from, size_t to, unsigned val) {
  size_t i = from;
  uint64_t pat = POISON64 / POISON * val;
  for (; i < to && (i & 7); i++) if (p[i] != val) return (int64_t)i;
  for (; i + 8 <= to; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    if (w != pat) break;
  }
  for (; i < to; i++) if (p[i] != val) return (int64_t)i;
  return -1;
}

size_t _hak_dbg_pad(size_t size) {
  return _hak_cfg.debug >= 2 && size < HAK_MID_MAX ? size + 1 : size;
}

static void set_canary(unsigned char *p, dbg_meta *m, uint32_t idx, size_t req, uint32_t bs) {
  m->req[idx] = (uint32_t)req;
  if (req < bs) memset(p + req, CANARY, bs - req);
}

/* The reports are out of line: the checks' hot paths keep a small frame. */
#define COLD __attribute__((noinline, cold))

static COLD void canary_report(const unsigned char *p, const hak_ss *ss, uint32_t req, int64_t off) {
  char what[128];
  _hak_fmt(what, sizeof what, "written past its requested size (%u bytes; byte at offset %lld changed)",
           req, (long long)off);
  _hak_detect(HKT_DET_CANARY, p, ss, (uint64_t)off, what);
}

static void check_canary(const unsigned char *p, const hak_ss *ss, dbg_meta *m, uint32_t idx) {
  uint32_t req = m->req[idx];
  if (req >= ss->block_size) return;
  int64_t off = first_changed(p, req, ss->block_size, CANARY);
  if (off >= 0) canary_report(p, ss, req, off);
}

static COLD void poison_report(const void *p, const hak_ss *ss, int64_t off) {
  char what[128];
  _hak_fmt(what, sizeof what, "freed block was written after free (byte at offset %lld changed)", (long long)off);
  _hak_detect(HKT_DET_POISON, p, ss, (uint64_t)off, what);
}

static COLD void handout_report(const void *p, const hak_ss *ss, uint32_t idx, uint8_t st) {
  _hak_detect(HKT_DET_FREELIST, p, ss, idx,
              st == HAK_BLK_USED ? "handed out while the program still holds it (corrupt freelist or SuperSlab accounting)"
                            : "handed out while it waits in quarantine (corrupt freelist)");
}

void _hak_dbg_track(void *p, size_t req, unsigned cls) {
  if (cls >= HAK_CLASSES || !p) return;
  hak_ss *ss = _hak_ss_of(p);
  dbg_meta *m;
  uint32_t idx;
  /* A block handed out of this thread's cache is of a SuperSlab it owns,
   * unless that SuperSlab was released under the cache (an injected early
   * release): then its chunk is unregistered or already another thread's
   * new SuperSlab, which of the two depending on timing alone. Its state
   * bytes are not this block's: leave them, so that recording and replay
   * decide the same (the release itself was the detection). */
  if (!locate(ss, p, &m, &idx) || unlikely(HAK_RD(ss->owner) != _hak_tls_idx)) return;
  uint8_t st = atomic_load_explicit(&m->state[idx], memory_order_relaxed);
  if (unlikely(st == HAK_BLK_USED || st == HAK_BLK_QUAR)) {
    handout_report(p, ss, idx, st);
  } else if (st == HAK_BLK_FREE && _hak_cfg.debug >= 2) {
    int64_t off = first_changed(p, LINK_SKIP, ss->block_size, POISON);
    if (unlikely(off >= 0)) poison_report(p, ss, off);
  }
  atomic_store_explicit(&m->state[idx], HAK_BLK_USED, memory_order_relaxed);
  if (idx >= m->hi) m->hi = idx + 1;
  if (_hak_cfg.debug >= 2) set_canary(p, m, idx, req, ss->block_size);
}

/* realloc in place, or malloc_usable_size (req = the block size: no canary). */
void _hak_dbg_resize(void *p, size_t req) {
  hak_ss *ss = _hak_ss_of(p);
  dbg_meta *m;
  uint32_t idx;
  if (_hak_cfg.debug < 2 || !locate(ss, p, &m, &idx)) return;
  if (atomic_load_explicit(&m->state[idx], memory_order_relaxed) != HAK_BLK_USED) return;
  check_canary(p, ss, m, idx);
  set_canary(p, m, idx, req, ss->block_size);
}

/* Where a block that is already free is, in words. */
static const char *where_free(const void *p, const hak_ss *ss, uint8_t st) {
  if (st == HAK_BLK_QUAR) return "already freed: it waits in a quarantine";
  hak_heap *h = _hak_tls;
  if (h->state == HAK_HEAP_LIVE && HAK_RD(ss->owner) == h->idx) {
    const hak_tcache *tc = &h->cache[ss->cls];
    for (uint32_t i = 0; i < tc->count; i++)
      if (tc->slot[i] == p) return "already freed: it sits in this thread's cache";
  }
  if (HAK_RD(ss->where) == HAK_SS_EMPTY) return "already freed: its SuperSlab is empty, parked for reuse";
  return "already freed: it is on its SuperSlab's freelist, in a cache or in a remote queue";
}

/* ---- quarantine (level 3) ---------------------------------------------- */

typedef struct quar {
  void **slot;
  uint32_t *size;
  uint32_t cap, head, count;
  uint64_t bytes;
} quar;
static __thread quar q_tls __attribute__((tls_model("initial-exec")));


/* Quarantined blocks count as freed in hak_stats from the moment the
 * program frees them: the put counts the free, the release (which counts
 * again in the free path) takes it back. */
static void quar_release_one(quar *q) {
  void *p = q->slot[q->head];
  q->bytes -= q->size[q->head];
  q->head = (q->head + 1) % q->cap;
  q->count--;
  hak_ss *ss = _hak_ss_of(p);
  dbg_meta *m;
  uint32_t idx;
  if (locate(ss, p, &m, &idx)) {
    /* Checked on the way out as well as at reuse: a block written after
     * free is found here whether or not anyone allocates it again (its
     * owner may have stopped allocating), at a point the program's calls
     * alone decide. Nothing has linked it yet: every byte is poison. */
    int64_t off = first_changed(p, 0, ss->block_size, POISON);
    if (unlikely(off >= 0)) {
      poison_report(p, ss, off);
      memset(p, POISON, ss->block_size);   /* going on (continue mode): reported once */
    }
    atomic_store_explicit(&m->state[idx], HAK_BLK_FREE, memory_order_relaxed);
    _hak_tls->cache[ss->cls].frees--;
  }
  _hak_free_raw(p);
}

/* 1 if p went into the quarantine (it is freed later). */
static int quar_put(void *p, uint32_t size, dbg_meta *m, uint32_t idx) {
  quar *q = &q_tls;
  uint64_t budget = _hak_cfg.quarantine;
  if (!budget || size > budget) return 0;
  if (!q->slot) {
    /* A thread that only frees has no heap yet; it needs one so that its
     * exit (which empties the quarantine) runs. */
    if (_hak_tls->state == HAK_HEAP_EMPTY && !_hak_heap_init()) return 0;
    if (_hak_tls->state != HAK_HEAP_LIVE) return 0;   /* exiting: no quarantine */
    uint64_t cap = budget / 8 + 1;
    if (cap > (1u << 24)) cap = 1u << 24;
    q->slot = _hak_os_alloc_meta(cap * (sizeof(void *) + sizeof(uint32_t)));
    if (!q->slot) return 0;
    q->size = (uint32_t *)(q->slot + cap);
    q->cap = (uint32_t)cap;
  }
  while (q->count && (q->count == q->cap || q->bytes + size > budget)) quar_release_one(q);
  uint32_t tail = (q->head + q->count) % q->cap;
  q->slot[tail] = p;
  q->size[tail] = size;
  q->count++;
  q->bytes += size;
  atomic_store_explicit(&m->state[idx], HAK_BLK_QUAR, memory_order_relaxed);
  _hak_tls->cache[_hak_ss_of(p)->cls].frees++;
  return 1;
}

void _hak_dbg_quarantine_drain(void) {
  quar *q = &q_tls;
  while (q->count) quar_release_one(q);
  if (q->slot) {
    _hak_os_release(q->slot, (size_t)q->cap * (sizeof(void *) + sizeof(uint32_t)));
    memset(q, 0, sizeof *q);
  }
}

/* ---- free -------------------------------------------------------------- */

static COLD void free_report(const void *p, const hak_ss *ss, uint8_t st) {
  if (st == HAK_BLK_FRESH) _hak_detect(HKT_DET_INVALID_FREE, p, ss, 0, "free of a block hakmem never handed out");
  else _hak_detect(HKT_DET_DOUBLE_FREE, p, ss, 0, where_free(p, ss, st));
}

int _hak_dbg_free(void *p, hak_ss *ss) {
  dbg_meta *m;
  uint32_t idx;
  if (!locate(ss, p, &m, &idx)) return 0;   /* not a block start: the caller reports it */
  /* A load and a store, not an exchange: two threads freeing the same block
   * at the very same moment may both pass, every other double free is
   * caught, and level 1 stays cheap. */
  uint8_t st = atomic_load_explicit(&m->state[idx], memory_order_relaxed);
  if (unlikely(st != HAK_BLK_USED)) {
    free_report(p, ss, st);
    return 1;
  }
  atomic_store_explicit(&m->state[idx], HAK_BLK_FREE, memory_order_relaxed);
  if (_hak_cfg.debug >= 2) {
    check_canary(p, ss, m, idx);
    memset(p, POISON, ss->block_size);
  }
  if (_hak_cfg.debug >= 3) return quar_put(p, ss->block_size, m, idx);
  return 0;
}

/* What is wrong with realloc's pointer (a detection kind, 0 if nothing),
 * without reporting it: realloc records its call before the detection. */
unsigned _hak_dbg_realloc_check(void *p, const char **why) {
  hak_ss *ss = _hak_ss_of(p);
  dbg_meta *m;
  uint32_t idx;
  if (!ss) {
    uint64_t off = (uint64_t)((char *)p - _hak_arena.ss_base);
    if (off >= HAK_RD(_hak_arena.ss_top)) return 0;          /* large or foreign: realloc judges */
    *why = "realloc of a block in a SuperSlab that is no longer registered";
    return HKT_DET_STALE_FREE;
  }
  if (!locate(ss, p, &m, &idx)) return 0;
  uint8_t st = atomic_load_explicit(&m->state[idx], memory_order_relaxed);
  if (st == HAK_BLK_USED) return 0;
  *why = st == HAK_BLK_FRESH ? "realloc of a block hakmem never handed out" : "realloc of a block that is already freed";
  return st == HAK_BLK_FRESH ? HKT_DET_INVALID_FREE : HKT_DET_DOUBLE_FREE;
}

/* ---- SuperSlab invariants ---------------------------------------------- */

/* At a refill, before blocks are taken: every carved block is either on the
 * freelist or counted live (live + nfree == carved), and (level 2) the
 * freelist links that will be followed point at free blocks of this
 * SuperSlab. A broken link is cut (in continue mode) so the refill cannot
 * follow it; the blocks behind it are lost. */
void _hak_dbg_freelist(hak_ss *ss, uint32_t want) {
  if (ss->live + ss->nfree != ss->carved) {
    char what[160];
    _hak_fmt(what, sizeof what, "SuperSlab accounting broken at refill: %u live + %u on the freelist != %u carved",
             ss->live, ss->nfree, ss->carved);
    _hak_detect(HKT_DET_SS_INVARIANT, ss, ss, ss->live, what);
  }
  if (_hak_cfg.debug < 2) return;
  void **link = &ss->freelist;
  for (uint32_t k = 0; k < want && *link; k++) {
    void *b = *link;
    dbg_meta *m;
    uint32_t idx;
    int ok = locate(ss, b, &m, &idx) && idx < ss->carved;
    if (ok) {
      uint8_t st = atomic_load_explicit(&m->state[idx], memory_order_relaxed);
      ok = st == HAK_BLK_FREE || st == HAK_BLK_FRESH;
    }
    if (!ok) {
      const void *holder = link == &ss->freelist ? (const void *)ss : (const void *)link;
      char what[160];
      _hak_fmt(what, sizeof what, "freelist link in %p points at %p, not a free block of this SuperSlab "
               "(the holder was written after free)", holder, b);
      _hak_detect(HKT_DET_FREELIST, holder, ss, (uint64_t)(uintptr_t)b, what);
      *link = NULL;
      ss->nfree = k;
      return;
    }
    link = (void **)b;
  }
}

/* When the owner retires ss (live == 0: it will be parked or released) or
 * abandons it at thread exit: is any block of it still out? At retire every
 * carved block must be back on the freelist (a block in a cache is not) and
 * none held by the program; at abandon the count must match the freelist. */
void _hak_dbg_audit(hak_heap *h, hak_ss *ss, int abandon) {
  dbg_meta *m = meta ? meta[chunk_of(ss)] : NULL;
  uint32_t in_use = 0;
  const void *first = NULL;
  if (m && !abandon) {
    /* USED and QUAR are the odd states: count low bits, 8 bytes a step. */
    const unsigned char *st = (const unsigned char *)m->state;
    uint32_t i = 0, n = ss->carved;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      memcpy(&w, st + i, 8);
      w &= 0x0101010101010101ull;
      if (w) {
        if (!first) first = ss->blocks + (size_t)(i + __builtin_ctzll(w) / 8) * ss->block_size;
        in_use += (uint32_t)__builtin_popcountll(w);
      }
    }
    for (; i < n; i++)
      if (st[i] & 1) { if (!in_use++ && !first) first = ss->blocks + (size_t)i * ss->block_size; }
  }
  char what[200];
  if (!abandon && (in_use || ss->nfree != ss->carved || atomic_load_explicit(&ss->remote, memory_order_relaxed))) {
    _hak_fmt(what, sizeof what, "SuperSlab retired as empty by thread %u while %u of its blocks are in use "
             "(%u carved, %u back on the freelist, remote queue %s)", h->idx, in_use, ss->carved, ss->nfree,
             atomic_load_explicit(&ss->remote, memory_order_relaxed) ? "not empty" : "empty");
  } else if (abandon && ss->live + ss->nfree != ss->carved) {
    _hak_fmt(what, sizeof what, "SuperSlab abandoned by thread %u with broken accounting: %u live + %u on the "
             "freelist != %u carved", h->idx, ss->live, ss->nfree, ss->carved);
  } else {
    return;
  }
  _hak_detect(HKT_DET_SS_INVARIANT, first ? first : (const void *)ss, ss, in_use, what);
}
