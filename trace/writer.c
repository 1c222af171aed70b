/* writer.c — encode events into zstd frames (docs/trace-format.md).
 *
 * Events of a frame are split into byte streams by field (heads, flags,
 * threads, times, ...) and the streams are compressed together as one zstd
 * frame with a content checksum. Each frame is self-contained: predictors
 * and the callsite table start afresh, so a file cut after any whole frame
 * reads to there, and recovery can append frames to it. Memory comes from
 * hkt_mem: the writer runs inside recorded processes.
 *
 * Version 2 models what an allocator trace repeats, so that most fields
 * cost nothing: a malloc mostly hands out a block freed lately in its class
 * (the freed rings of hkt_internal.h), a free mostly names a block allocated
 * lately in the frame (a back-reference), the class follows from the size
 * or the block, flags repeat per kind and callers per thread and kind.
 * zstd then packs what is left. */
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>
#include "zstd_api.h"
#include "hkt_internal.h"
#include "spool.h"   /* hkt_rec: the drain hands its records over as they are */

#define CLS_LUT_MAX 4096u   /* class prediction by table for sizes up to this */
#define PTAB_PROBES 8       /* a pointer not found within this many slots is forgotten */
#ifndef PTAB_SHRINK
#define PTAB_SHRINK 4
#endif

/* Most bytes one event can add to each stream (STR is checked per put):
 * the streams are sized for a whole frame when it starts, so encoding
 * writes without capacity checks. */
static const uint8_t stream_max[HKT_S__COUNT] = {
  [HKT_S_HEAD] = 1, [HKT_S_FLAGS] = 3, [HKT_S_TID] = 5, [HKT_S_TIME] = 10, [HKT_S_CLS] = 5,
  [HKT_S_PTR] = 20, [HKT_S_SIZE] = 10, [HKT_S_AUX] = 48, [HKT_S_CALLER] = 5, [HKT_S_STR] = 0,
  [HKT_S_SIZE_LO] = 1, [HKT_S_FREE_LO] = 1, [HKT_S_FREE_HI] = 10,
};

/* What the writer knows of a pointer seen in this frame. Freed: val = its
 * position in the ring of class slot `tag`. Live: what a FREE naming it
 * needs, in the entry the FREE finds anyway (one cache miss, not two):
 * val = its hkt_live number << 5 | thread slot, tag = its class (0xff:
 * HKT_NO_CLASS). A class past a byte (only made-up traces have one) goes
 * to allocs[] instead, val its index there (P_LIVE_WIDE). */
enum { P_LIVE = 1, P_FREED = 2, P_LIVE_WIDE = 3 };   /* bit 0: live */
struct ptr_ent { uint64_t ptr; uint32_t val; uint16_t gen; uint8_t state, tag; };
_Static_assert(sizeof(struct ptr_ent) == 16, "hkt_ptab_prefetch assumes 16-byte entries");

/* The live allocations of a frame, the writer's side. hkt_live
 * (hkt_internal.h) numbers each thread slot's allocations and ranks a
 * FREE's block among the live ones; the reader also selects (rank to
 * number), which its prefix counts serve. The writer only ranks, so it
 * keeps counts that an allocation or a free changes with one add each:
 * live bits per word (a byte, 16 words a group), per group (16 bits, 16
 * groups a block) and per block. A rank sums the words after its word in
 * the group (one SSE2 sum of absolute differences), the groups after its
 * group in the block (one multiply-add) and the later blocks: the very
 * ranks of hkt_live_rank. */
#define WL_BLOCK HKT_LIVE_GRAIN   /* allocation numbers per block: 16 groups of 16 words */
typedef struct wlive_slot {
  uint64_t *bits;           /* bit k: allocation number k is live */
  uint8_t *c1;              /* per word: live bits */
  uint16_t *c2;             /* per group: live */
  uint32_t *c3;             /* per block: live */
  uint32_t n, cap;          /* cap: a multiple of WL_BLOCK */
} wlive_slot;

struct hkt_writer {
  int fd;
  int err;                  /* sticky: first error */
  int err_errno;
  int level;
  int popcnt;               /* the CPU has the popcnt instruction */
  uint32_t frame_events;
  uint32_t time_shift;
  uint32_t ncls;
  uint32_t class_size[64];  /* from the header: class prediction */
  uint16_t cls_lut[CLS_LUT_MAX + 1];   /* hkt_predict_cls of MALLOC by size */
  uint64_t next_seq;        /* events put so far */
  uint64_t bytes;           /* compressed bytes written */
  ZSTD_CCtx *cctx;

  /* the frame being built */
  uint32_t n;
  uint32_t n_check;         /* the next n at which a put looks past its event (put_check) */
  uint64_t first_seq, t0;
  hkt_buf s[HKT_S__COUNT];
  uint8_t *o[HKT_S__COUNT]; /* where each stream but STR goes on (its len is set when the frame is written) */
  hkt_buf stacks;
  uint32_t nstacks;
  /* the predictions writer and reader share (docs/trace-format.md) */
  uint64_t pred[HKT_PTR_SLOTS];     /* last pointer per class slot */
  hkt_model m;                      /* (its hkt_live stays empty: wl instead) */
  wlive_slot wl[HKT_TSLOTS];        /* live allocations per thread slot */
  /* live pointers whose class does not fit ptr_ent.tag (P_LIVE_WIDE) */
  struct alloc_ent { uint32_t cls; uint32_t k_slot; } *allocs;   /* k_slot: hkt_live number << 5 | thread slot */
  _Static_assert(HKT_TSLOTS == 32, "k_slot keeps the thread slot in 5 bits");
  uint32_t nalloc;
  /* callsite interning: open addressing; entries of older frames differ
   * by gen, so nothing is cleared per frame */
  struct caller_ent { uint64_t caller; uint32_t gen, idx; } *ctab;
  uint32_t ccap;            /* power of two, > frame_events */
  uint64_t *callers;        /* table in order of first use */
  uint64_t clast[HKT_TSLOTS * 64];   /* the caller whose index is m.cpred's (0: none yet) */
  uint32_t ncallers;
  /* pointers of this frame (the writer's side only: what to reference),
   * open addressing, older frames' entries differ by gen */
  struct ptr_ent *ptab;
  uint32_t pcap;            /* power of two, > frame_events */
  uint32_t gen;
  hkt_ptab_view pview;      /* ptab and pcap - 1, for prefetches from outside */
  void *ptab_mem, *allocs_mem, *rings_mem;   /* the memory under ptab, allocs, m.rings.ent (table_alloc) */

  hkt_buf frame;            /* assembled content */
  uint8_t *out;
  size_t out_cap;
};

/* The class table as hkt_predict_cls sees it, and its lookup table. */
static void set_classes(hkt_writer *w, uint32_t ncls, const uint32_t *class_size) {
  w->ncls = ncls > 64 ? 64 : ncls;
  memcpy(w->class_size, class_size, sizeof w->class_size);
  for (uint32_t sz = 0; sz <= CLS_LUT_MAX; sz++)
    w->cls_lut[sz] = (uint16_t)hkt_predict_cls(HKT_EV_MALLOC, sz, w->class_size, w->ncls);
}

static inline uint32_t predict_cls(const hkt_writer *w, unsigned kind, uint64_t size) {
  if (kind != HKT_EV_MALLOC && kind != HKT_EV_REALLOC && kind != HKT_EV_ALIGNED) return HKT_NO_CLASS;
  if (hkt_likely(size <= CLS_LUT_MAX)) return w->cls_lut[size];
  return hkt_predict_cls(kind, size, w->class_size, w->ncls);
}

static int fail(hkt_writer *w, int err) {
  if (!w->err) { w->err = err; w->err_errno = errno; }
  w->n_check = 0;   /* the put under way returns it */
  return w->err;
}

/* The next n at which a put must look past its event: the frame's end,
 * the next 256th event (the frame's bytes are bounded there), or at once
 * after an error. Between them a put tests one count. */
static void set_check(hkt_writer *w) {
  uint32_t next = (w->n | 255) + 1;
  w->n_check = w->err ? 0 : next < w->frame_events ? next : w->frame_events;
}

static int write_all(hkt_writer *w, const uint8_t *p, size_t n) {
  while (n) {
    ssize_t k = write(w->fd, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      return fail(w, HKT_ERR_IO);
    }
    p += k;
    n -= (size_t)k;
    w->bytes += (uint64_t)k;
  }
  return 0;
}

/* Compress `content` as one frame (checksum on, content size known) into
 * a buffer big enough for any outcome, and write it with one call. A zstd
 * block ends at each of the ncut offsets in cut: each stream of an event
 * frame gets blocks, so Huffman tables, of its own (one table over several
 * streams' bytes would cost up to a bit a byte more). */
static int write_frame(hkt_writer *w, const uint8_t *content, size_t len, const size_t *cut, unsigned ncut) {
  if (w->err) return w->err;
  size_t bound = ZSTD_compressBound(len) + 64 * (size_t)(ncut + 1) + 1024;
  if (w->out_cap < bound) {
    size_t cap = w->out_cap ? w->out_cap : 1u << 16;
    while (cap < bound) cap *= 2;
    uint8_t *o = hkt_mem_alloc(cap);
    if (!o) return fail(w, HKT_ERR_NOMEM);
    hkt_mem_free(w->out);
    w->out = o;
    w->out_cap = cap;
  }
  ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_only);
  ZSTD_CCtx_setPledgedSrcSize(w->cctx, len);
  ZSTD_outBuffer out = { w->out, w->out_cap, 0 };
  /* the whole content is one stable input (ZSTD_c_stableInBuffer): its end
   * moves from cut to cut, and zstd reads it in place, with no copy into
   * a window buffer of its own */
  ZSTD_inBuffer in = { content, 0, 0 };
  for (unsigned i = 0; i <= ncut; i++) {
    in.size = i < ncut ? cut[i] : len;
    ZSTD_EndDirective op = i < ncut ? ZSTD_e_flush : ZSTD_e_end;
    size_t left;
    do {
      left = ZSTD_compressStream2(w->cctx, &out, &in, op);
      if (ZSTD_isError(left)) return fail(w, HKT_ERR_ZSTD);
    } while (left && out.pos < out.size);
    if (left) return fail(w, HKT_ERR_ZSTD);   /* cannot happen: out has the bound */
  }
  return write_all(w, w->out, out.pos);
}

void hkt_module_encode(hkt_buf *b, const hkt_module *m) {
  size_t n = m->path ? strlen(m->path) : 0;
  hkt_buf_str(b, m->path ? m->path : "", n > HKT_MAX_STR ? HKT_MAX_STR : n);
  hkt_buf_varint(b, m->base);
  hkt_buf_varint(b, m->size);
  uint32_t bl = m->build_id_len > 40 ? 40 : m->build_id_len;
  hkt_buf_varint(b, bl);
  hkt_buf_put(b, m->build_id, bl);
}

void hkt_header_encode(hkt_buf *b, const hkt_header *h) {
  hkt_buf_put(b, HKT_MAGIC_HEADER, 4);
  hkt_buf_varint(b, HKT_FORMAT_VERSION);
  hkt_buf_varint(b, h->pid);
  hkt_buf_varint(b, h->ppid);
  hkt_buf_varint(b, h->start_realtime_ns);
  hkt_buf_varint(b, h->time_shift);
  hkt_buf_varint(b, h->tsc_per_sec);
  const char *s[3] = { h->clock, h->cmdline, h->config };
  for (int i = 0; i < 3; i++) {
    size_t n = s[i] ? strlen(s[i]) : 0;
    if (i != 2 && n > HKT_MAX_STR) n = HKT_MAX_STR;
    hkt_buf_str(b, s[i] ? s[i] : "", n);
  }
  hkt_buf_varint(b, h->arena_base);
  uint32_t nc = h->num_classes > 64 ? 64 : h->num_classes;
  hkt_buf_varint(b, nc);
  for (uint32_t i = 0; i < nc; i++) hkt_buf_varint(b, h->class_size[i]);
  uint32_t nm = h->modules ? h->num_modules : 0;
  if (nm > HKT_MAX_MODULES) nm = HKT_MAX_MODULES;
  hkt_buf_varint(b, nm);
  for (uint32_t i = 0; i < nm; i++) hkt_module_encode(b, &h->modules[i]);
  hkt_buf_varint(b, h->forked ? h->fork_seq + 1 : 0);
  const char *pt = h->forked && h->parent_trace ? h->parent_trace : "";
  size_t n = strlen(pt);
  hkt_buf_str(b, pt, n > HKT_MAX_STR ? HKT_MAX_STR : n);
}

static void wlive_reset(hkt_writer *w) {
  for (unsigned i = 0; i < HKT_TSLOTS; i++) {
    wlive_slot *s = &w->wl[i];
    if (s->n) {
      uint32_t words = (s->n + 63) / 64, groups = (words + 15) / 16, blocks = (groups + 15) / 16;
      memset(s->bits, 0, (size_t)words * sizeof *s->bits);
      memset(s->c1, 0, words);
      memset(s->c2, 0, (size_t)groups * sizeof *s->c2);
      memset(s->c3, 0, (size_t)blocks * sizeof *s->c3);
    }
    s->n = 0;
  }
}

static void wlive_release(hkt_writer *w) {
  for (unsigned i = 0; i < HKT_TSLOTS; i++) {
    wlive_slot *s = &w->wl[i];
    hkt_mem_free(s->bits);
    hkt_mem_free(s->c1);
    hkt_mem_free(s->c2);
    hkt_mem_free(s->c3);
    *s = (wlive_slot){ 0 };
  }
}

/* Room for allocation number s->n: 0 or HKT_ERR_NOMEM. */
static __attribute__((noinline)) int wlive_grow(wlive_slot *s) {
  uint32_t cap = s->cap ? s->cap * 2 : WL_BLOCK;
  uint64_t *b = hkt_mem_realloc(s->bits, (size_t)cap / 64 * sizeof *b);
  if (b) s->bits = b;
  uint8_t *c1 = b ? hkt_mem_realloc(s->c1, (size_t)cap / 64) : NULL;
  if (c1) s->c1 = c1;
  uint16_t *c2 = c1 ? hkt_mem_realloc(s->c2, (size_t)cap / 1024 * sizeof *c2) : NULL;
  if (c2) s->c2 = c2;
  uint32_t *c3 = c2 ? hkt_mem_realloc(s->c3, (size_t)cap / WL_BLOCK * sizeof *c3) : NULL;
  if (c3) s->c3 = c3;
  if (!c3) return HKT_ERR_NOMEM;
  s->cap = cap;
  return 0;
}

static void frame_reset(hkt_writer *w) {
  for (int i = 0; i < HKT_S__COUNT; i++) {
    w->s[i].len = 0;
    w->o[i] = w->s[i].p;
  }
  w->stacks.len = 0;
  w->nstacks = 0;
  w->ncallers = 0;
  w->nalloc = 0;
  if ((uint16_t)++w->gen == 0) {   /* wrapped: entries of gen 0 would look current */
    memset(w->ptab, 0, (size_t)w->pcap * sizeof *w->ptab);
    memset(w->ctab, 0, (size_t)w->ccap * sizeof *w->ctab);
    w->gen++;
  }
  memset(w->pred, 0, sizeof w->pred);
  memset(w->clast, 0, sizeof w->clast);
  hkt_model_reset(&w->m);
  wlive_reset(w);
  w->n = 0;
  set_check(w);
}

/* Memory for a table that events read at random (the pointer table, the
 * live allocations, the rings), on 2 MiB pages where the kernel gives them
 * (transparent huge pages on madvise). The writer shares its core with the
 * recorded program, whose pages crowd the TLB: on 4 KiB pages a lookup, or
 * the drain's prefetch of it, often waited for a page walk (larson's
 * writer thread -10% CPU per event). Small tables (small frames) stay on
 * 4 KiB pages. *mem: what hkt_mem_free takes. */
static void *table_alloc(size_t n, void **mem) {
  const size_t huge = 2u << 20;
  if (n < huge / 4) return *mem = hkt_mem_alloc(n);
  size_t len = (n + huge - 1) & ~(huge - 1);
  uint8_t *m = hkt_mem_alloc(len + huge);
  *mem = m;
  if (!m) return NULL;
  uint8_t *a = (uint8_t *)(((uintptr_t)m + huge - 1) & ~(uintptr_t)(huge - 1));
  madvise(a, len, MADV_HUGEPAGE);   /* a hint: 4 KiB pages when refused */
  return a;
}

static void free_tables(hkt_writer *w) {
  hkt_mem_free(w->ctab);
  hkt_mem_free(w->callers);
  hkt_mem_free(w->ptab_mem);
  hkt_mem_free(w->allocs_mem);
  w->ptab_mem = w->allocs_mem = NULL;
  w->allocs = NULL;
  w->ctab = NULL;
  w->callers = NULL;
  w->ptab = NULL;
}

/* Tables and streams for frames of frame_events events (fresh memory is
 * zero: gen 1 starts clean). */
static int alloc_tables(hkt_writer *w) {
  uint32_t cap = 1024;
  while (cap < w->frame_events + 2) cap *= 2;
  free_tables(w);
  w->ccap = cap;
  w->pcap = cap / PTAB_SHRINK;
  w->ptab = table_alloc((size_t)w->pcap * sizeof *w->ptab, &w->ptab_mem);
  w->pview = (hkt_ptab_view){ (const uint8_t *)w->ptab, w->pcap - 1 };
  w->allocs = table_alloc((size_t)(w->frame_events + 1) * sizeof *w->allocs, &w->allocs_mem);
  w->ctab = hkt_mem_alloc((size_t)cap * sizeof *w->ctab);
  w->callers = hkt_mem_alloc((size_t)(w->frame_events + 1) * sizeof *w->callers);
  w->gen = 0;
  int failed = !w->ctab || !w->callers || !w->ptab || !w->allocs;
  for (int i = 0; i < HKT_S__COUNT; i++) {
    hkt_buf_release(&w->s[i]);
    if (stream_max[i] && hkt_buf_reserve(&w->s[i], (size_t)stream_max[i] * w->frame_events + 64)) failed = 1;
    w->o[i] = w->s[i].p;
  }
  if (!failed) frame_reset(w);
  return failed ? HKT_ERR_NOMEM : 0;
}

static void writer_free(hkt_writer *w) {
  for (int i = 0; i < HKT_S__COUNT; i++) hkt_buf_release(&w->s[i]);
  hkt_buf_release(&w->stacks);
  hkt_buf_release(&w->frame);
  free_tables(w);
  hkt_live_release(&w->m.live);
  wlive_release(w);
  hkt_mem_free(w->rings_mem);
  hkt_mem_free(w->out);
  ZSTD_freeCCtx(w->cctx);
  hkt_mem_free(w);
}

/* zstd's level, and at level 1 (the default) a match finder hash table of
 * 2^11 entries (8 KiB) instead of the level's 2^12 to 2^14 (by frame size):
 * on these streams it finds as many matches (frames 0.05-0.5% smaller on
 * the five bench workloads) for as many instructions, but stays in L1
 * beside the writer's own tables: zstd's CPU time -5 to -10%. Other levels
 * keep their own (the negative ones lose bytes with it). */
#define LEVEL1_HASH_LOG 11
static void set_zstd_level(hkt_writer *w, int level) {
  w->level = level;
  ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_hashLog, level == 1 ? LEVEL1_HASH_LOG : 0);   /* 0: the level's own */
}

static int writer_new(hkt_writer **out, int fd) {
  *out = NULL;
  hkt_writer *w = hkt_mem_alloc(sizeof *w);
  if (!w) return HKT_ERR_NOMEM;
  w->fd = fd;
  w->level = HKT_DEFAULT_LEVEL;
  __builtin_cpu_init();   /* the writer may start in a constructor that runs before libgcc's */
  w->popcnt = !hkt_isa_base() && __builtin_cpu_supports("popcnt");
  w->frame_events = HKT_DEFAULT_FRAME_EVENTS;
  w->cctx = hkt_zstd_cctx();
  w->out_cap = 1u << 16;
  w->out = hkt_mem_alloc(w->out_cap);
  w->m.rings.ent = table_alloc((size_t)HKT_PTR_SLOTS * HKT_RING_CAP * sizeof *w->m.rings.ent, &w->rings_mem);
  set_classes(w, 0, w->class_size);
  if (!w->cctx || !w->out || !w->m.rings.ent || alloc_tables(w)) {
    writer_free(w);
    return HKT_ERR_NOMEM;
  }
  ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
  set_zstd_level(w, w->level);
  ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_stableInBuffer, 1);   /* write_frame */
  *out = w;
  return 0;
}

int hkt_writer_fdopen(hkt_writer **out, int fd, const char *path, const hkt_header *h) {
  (void)path;
  if (!out || fd < 0 || !h) return HKT_ERR_ARG;
  HKT_TRY(writer_new(out, fd));
  hkt_writer *w = *out;
  w->time_shift = h->time_shift > 32 ? 32 : h->time_shift;
  set_classes(w, h->num_classes, h->class_size);
  hkt_buf_reserve(&w->frame, 4096);
  hkt_header_encode(&w->frame, h);
  int e = w->frame.failed ? HKT_ERR_NOMEM : write_frame(w, w->frame.p, w->frame.len, NULL, 0);
  w->frame.len = 0;
  if (HKT_IS_ERR(e)) {
    int saved = errno;
    close(fd);
    writer_free(w);
    *out = NULL;
    errno = saved;
    return e;
  }
  return 0;
}

int hkt_writer_open(hkt_writer **out, const char *path, const hkt_header *h) {
  if (!out || !path || !h) return HKT_ERR_ARG;
  *out = NULL;
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return HKT_ERR_IO;
  return hkt_writer_fdopen(out, fd, path, h);
}

int hkt_writer_set_frame_events(hkt_writer *w, uint32_t n) {
  if (!w || w->n || n > (1u << 20)) return HKT_ERR_ARG;
  w->frame_events = n ? n : HKT_DEFAULT_FRAME_EVENTS;
  return alloc_tables(w);
}

int hkt_writer_set_level(hkt_writer *w, int level) {
  if (!w || level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()) return HKT_ERR_ARG;
  set_zstd_level(w, level);
  return 0;
}

static inline uint32_t intern_caller(hkt_writer *w, uint64_t caller) {
  uint32_t h = (uint32_t)((caller * 0x9e3779b97f4a7c15ull) >> 32) & (w->ccap - 1);
  struct caller_ent *c;
  while ((c = &w->ctab[h])->gen == w->gen) {
    if (c->caller == caller) return c->idx;
    h = (h + 1) & (w->ccap - 1);
  }
  c->caller = caller;
  c->gen = w->gen;
  c->idx = w->ncallers;
  w->callers[w->ncallers] = caller;
  return w->ncallers++;
}

/* Bytes in stream i so far. */
static inline size_t stream_len(const hkt_writer *w, int i) {
  return i == HKT_S_STR ? w->s[i].len : (size_t)(w->o[i] - w->s[i].p);
}

/* Assemble the frame content: counts, tables, stream lengths, streams. */
static int flush_frame(hkt_writer *w) {
  if (w->err) return w->err;
  if (!w->n && !w->nstacks) return 0;
  for (int i = 0; i < HKT_S__COUNT; i++) w->s[i].len = stream_len(w, i);
  hkt_buf *f = &w->frame;
  f->len = 0;
  hkt_buf_put(f, HKT_MAGIC_EVENTS, 4);
  hkt_buf_varint(f, w->n ? w->first_seq : w->next_seq);
  hkt_buf_varint(f, w->n);
  hkt_buf_varint(f, w->n ? w->t0 : 0);
  hkt_buf_varint(f, w->nstacks);
  hkt_buf_put(f, w->stacks.p, w->stacks.len);
  hkt_buf_varint(f, w->ncallers);
  uint64_t prev = 0;
  for (uint32_t i = 0; i < w->ncallers; i++) {
    hkt_buf_varint(f, hkt_zz((int64_t)(w->callers[i] - prev)));
    prev = w->callers[i];
  }
  for (int i = 0; i < HKT_S__COUNT; i++) hkt_buf_varint(f, w->s[i].len);
  size_t cut[HKT_S__COUNT];
  unsigned ncut = 0;
  for (int i = 0; i < HKT_S__COUNT; i++) {
    if (f->len - (ncut ? cut[ncut - 1] : 0) >= 1024) cut[ncut++] = f->len;   /* small streams share a block */
    hkt_buf_put(f, w->s[i].p, w->s[i].len);
  }
  int failed = f->failed || w->stacks.failed;
  for (int i = 0; i < HKT_S__COUNT; i++) failed |= w->s[i].failed;
  if (failed) return fail(w, HKT_ERR_NOMEM);
  int e = write_frame(w, f->p, f->len, cut, ncut);
  frame_reset(w);
  return e;
}

static int frame_done(hkt_writer *w) {
  int e = flush_frame(w);
  return HKT_IS_ERR(e) ? e : 1;
}

/* After a put made n reach n_check (or put a string: bytes, force them
 * counted): the error, the frame full of events or of bytes (checked
 * every 256th event), else the next check. 1: the frame was written. */
static __attribute__((noinline)) int put_check(hkt_writer *w, int bytes_now) {
  if (w->err) return w->err;
  if (w->n >= w->frame_events) return frame_done(w);
  if ((w->n & 255) == 0 || bytes_now) {
    size_t bytes = w->stacks.len;
    for (int i = 0; i < HKT_S__COUNT; i++) bytes += stream_len(w, i);
    if (bytes >= HKT_DEFAULT_FRAME_BYTES) return frame_done(w);
  }
  set_check(w);
  return 0;
}

/* Unchecked varint into a stream sized for the frame (stream_max). */
static inline uint8_t *put_varint(uint8_t *o, uint64_t v) {
  if (hkt_likely(v < 0x80)) { *o = (uint8_t)v; return o + 1; }
  while (v >= 0x80) { *o++ = (uint8_t)(v | 0x80); v >>= 7; }
  *o++ = (uint8_t)v;
  return o;
}
#define S_VARINT(i, v) (w->o[i] = put_varint(w->o[i], (v)))
#define S_BYTE(i, v) (*w->o[i]++ = (uint8_t)(v))

static inline uint32_t ptab_hash(const hkt_writer *w, uint64_t ptr) { return hkt_ptab_hash(ptr, w->pcap - 1); }

/* The entry of ptr in this frame's pointer table: its own (*found = 1), or
 * the one to fill for it (a full neighbourhood gives up its first entry). */
static inline struct ptr_ent *ptab_find(hkt_writer *w, uint64_t ptr, int *found) {
  uint32_t h = ptab_hash(w, ptr);
  uint16_t gen = (uint16_t)w->gen;
  for (unsigned i = 0; i < PTAB_PROBES; i++) {
    struct ptr_ent *e = &w->ptab[(h + i) & (w->pcap - 1)];
    if (e->gen != gen) { *found = 0; return e; }
    if (e->ptr == ptr) { *found = 1; return e; }
  }
  *found = 0;
  return &w->ptab[h];
}

/* Mark e as ptr, live: allocation number k of thread slot ts, class cls. */
static inline void ptab_set_live(hkt_writer *w, struct ptr_ent *e, uint64_t ptr, uint32_t cls, uint32_t k, unsigned ts) {
  if (hkt_likely(cls < 0xff || cls == HKT_NO_CLASS)) {
    *e = (struct ptr_ent){ ptr, k << 5 | ts, (uint16_t)w->gen, P_LIVE, (uint8_t)(cls < 0xff ? cls : 0xff) };
  } else {
    w->allocs[w->nalloc] = (struct alloc_ent){ cls, k << 5 | ts };
    *e = (struct ptr_ent){ ptr, w->nalloc++, (uint16_t)w->gen, P_LIVE_WIDE, 0 };
  }
}
/* The class and k_slot of a live entry. */
static inline struct alloc_ent ptab_live(const hkt_writer *w, const struct ptr_ent *e) {
  if (hkt_likely(e->state == P_LIVE)) return (struct alloc_ent){ e->tag == 0xff ? HKT_NO_CLASS : e->tag, e->val };
  return w->allocs[e->val];
}

/* The line of ptr's probe on its way to the cache. */
void hkt_writer_prefetch(hkt_writer *w, uint64_t ptr) {
  if (w) hkt_ptab_prefetch(&w->pview, ptr);
}
const hkt_ptab_view *_hkt_writer_ptab(const hkt_writer *w) { return &w->pview; }

/* A new allocation of thread slot ts (hkt_live_add): its number there. */
static inline __attribute__((always_inline)) uint32_t live_add(hkt_writer *w, unsigned ts) {
  wlive_slot *s = &w->wl[ts];
  uint32_t k = s->n;
  if (hkt_unlikely(k >= s->cap) && wlive_grow(s)) {
    fail(w, HKT_ERR_NOMEM);
    return 0;
  }
  s->n = k + 1;
  s->bits[k / 64] |= 1ull << (k % 64);
  s->c1[k / 64]++;
  s->c2[k / 1024]++;
  s->c3[k / WL_BLOCK]++;
  return k;
}

/* Bytes (and 16-bit lanes) at index > i of the 16 from wl_after + 15 - i
 * are all ones, the others zero. */
static const uint8_t wl_after[32] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint16_t wl_after16[32] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
                                         0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff };

/* hkt_live_rank then hkt_live_kill of live allocation k of slot s: the
 * live allocations numbered after k. isa: popcnt is there. */
static inline __attribute__((always_inline)) uint32_t live_kill_rank(wlive_slot *s, uint32_t k, const int isa) {
  uint32_t wd = k / 64, g = wd / 16, b = g / 16;
  uint64_t x = s->bits[wd] & ~(1ull << (k % 64));
  s->bits[wd] = x;
  uint64_t above = x >> (k % 64) >> 1;   /* two shifts: k % 64 == 63 gives 0 */
  uint32_t r = isa ? (uint32_t)__builtin_popcountll(above) : hkt_popcount(above);
  for (uint32_t i = b + 1, last = (s->n - 1) / WL_BLOCK; i <= last; i++) r += s->c3[i];   /* the later blocks */
  /* the words after wd in its group: bytes summed as differences from 0 */
  __m128i w1 = _mm_and_si128(_mm_loadu_si128((const __m128i *)(s->c1 + g * 16)),
                             _mm_loadu_si128((const __m128i *)(wl_after + 15 - wd % 16)));
  __m128i sum = _mm_sad_epu8(w1, _mm_setzero_si128());   /* two 64-bit sums, below 2^11 */
  /* the groups after g in its block: 16-bit lanes (at most 1024 each), paired into 32 */
  const uint16_t *c2 = s->c2 + b * 16, *m = wl_after16 + 15 - g % 16;
  __m128i lo = _mm_and_si128(_mm_loadu_si128((const __m128i *)c2), _mm_loadu_si128((const __m128i *)m));
  __m128i hi = _mm_and_si128(_mm_loadu_si128((const __m128i *)(c2 + 8)), _mm_loadu_si128((const __m128i *)(m + 8)));
  sum = _mm_add_epi32(sum, _mm_madd_epi16(_mm_add_epi16(lo, hi), _mm_set1_epi16(1)));
  sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0x4e));
  sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0xb1));
  r += (uint32_t)_mm_cvtsi128_si32(sum);
  s->c1[wd]--;
  s->c2[g]--;
  s->c3[b]--;
  return r;
}

/* A FREE's code: low byte and the rest apart. */
static inline void put_free_code(hkt_writer *w, uint64_t u) {
  S_BYTE(HKT_S_FREE_LO, u);
  S_VARINT(HKT_S_FREE_HI, u >> 8);
}

/* A pointer as a delta to `base` (u even), or escaped whole (u = 2, then
 * the pointer in PTR); a FREE's code goes to FREE_LO/HI. */
static inline void put_ptr_delta(hkt_writer *w, uint64_t ptr, uint64_t base, int is_free) {
  int64_t d = (int64_t)(ptr - base);
  uint64_t u = (d & 7) == 0 ? hkt_zz(d >> 3) << 2 | HKT_P_DELTA : HKT_P_ABS;
  if (is_free) put_free_code(w, u);
  else S_VARINT(HKT_S_PTR, u);
  if (u == HKT_P_ABS) S_VARINT(HKT_S_PTR, ptr);
}

/* The PTR code of an event with a pointer; returns the class the reader
 * will predict when the pointer brings one (a FREE's back-reference), else
 * `predicted` unchanged. Updates the shared model. */
static inline uint32_t put_ptr(hkt_writer *w, const hkt_event *ev, unsigned kind, unsigned ts, uint32_t predicted) {
  uint64_t ptr = ev->ptr;
  unsigned slot = hkt_slot(ev->cls);
  int found;
  struct ptr_ent *e;
  if (kind == HKT_EV_FREE) {
    e = ptab_find(w, ptr, &found);
    if (found && (e->state & P_LIVE)) {
      struct alloc_ent a = ptab_live(w, e);
      uint32_t at = a.k_slot & (HKT_TSLOTS - 1), k = a.k_slot >> 5;
      uint64_t rank = live_kill_rank(&w->wl[at], k, 0);
      if (at == ts) put_free_code(w, rank << 2 | HKT_P_BACK);
      else {
        put_free_code(w, rank << 2 | HKT_P_XBACK);
        S_BYTE(HKT_S_PTR, at);
      }
      predicted = a.cls;
    } else {
      put_ptr_delta(w, ptr, w->pred[slot], 1);
    }
    uint32_t pos = hkt_ring_push(&w->m.rings, slot, ptr);
    *e = (struct ptr_ent){ ptr, pos, (uint16_t)w->gen, P_FREED, (uint8_t)slot };
  } else if (hkt_is_alloc(kind)) {
    hkt_rings *g = &w->m.rings;
    e = ptab_find(w, ptr, &found);
    if (found && e->state == P_FREED && e->tag == slot && hkt_ring_get(g, slot, e->val) == ptr) {
      uint32_t pos = e->val, top = g->top[slot];
      if (pos == top - 1) S_BYTE(HKT_S_PTR, HKT_P_RING);
      else if (pos == g->cursor[slot] + (uint32_t)g->stride[slot]) S_BYTE(HKT_S_PTR, HKT_P_STRIDE);
      else S_VARINT(HKT_S_PTR, (uint64_t)(top - 1 - pos) << 2 | HKT_P_RING);
      hkt_ring_take(g, slot, pos);
    } else {
      put_ptr_delta(w, ptr, w->m.npred[slot], 0);
      w->m.npred[slot] = ptr;
    }
    ptab_set_live(w, e, ptr, ev->cls, live_add(w, ts), ts);
  } else {
    put_ptr_delta(w, ptr, w->pred[slot], 0);
  }
  w->pred[slot] = ptr;
  return predicted;
}

/* The class a reader predicts before it sees a pointer (docs: step 8). */
static inline uint32_t predict_v2(const hkt_writer *w, const hkt_event *ev, unsigned kind, unsigned ts) {
  if (kind == HKT_EV_MALLOC || kind == HKT_EV_REALLOC || kind == HKT_EV_ALIGNED)
    return predict_cls(w, HKT_EV_MALLOC, ev->size);
  if (kind == HKT_EV_CALLOC) {
    uint64_t bytes;
    if (__builtin_mul_overflow(ev->size, ev->aux, &bytes)) return HKT_NO_CLASS;
    return predict_cls(w, HKT_EV_MALLOC, bytes);
  }
  return w->m.lcls[ts];
}

/* ---- fast paths ----
 * Nearly every event is a MALLOC, a FREE or a REMOTE_PUSH with no field
 * beyond ptr, size, aux, aux2 and caller. put_hot encodes those with the
 * very model steps and bytes of put_general, but with the kind and the
 * flags known, so each is a straight path in a function of its own: no
 * test per field, the ring and live-rank steps with their state in
 * locals, a caller that repeats skips its interning. Each byte goes out
 * as soon as it is known (streams keep their ends in w->o), which keeps
 * few values alive across the event: fewer registers spilled than when
 * the bytes were gathered at the end. */

/* The fields a fast path reads, from an hkt_event or from a spool record
 * (the drain's, read in place: no hkt_event is built for it). */
typedef struct hot_ev { uint64_t ptr, size, caller, aux, aux2, time_ns; uint32_t tid, cls; } hot_ev;
static inline __attribute__((always_inline)) hot_ev hot_of_event(const hkt_event *ev) {
  return (hot_ev){ ev->ptr, ev->size, ev->caller, ev->aux, ev->aux2, ev->time_ns, ev->tid, ev->cls };
}
static inline __attribute__((always_inline)) hot_ev hot_of_rec(const hkt_rec *r, uint64_t time_ns) {
  return (hot_ev){ r->ptr, r->size, r->caller, r->aux, r->aux2, time_ns, r->tid, r->cls == 0xffff ? HKT_NO_CLASS : r->cls };
}

static inline __attribute__((always_inline)) int put_hot(hkt_writer *w, const hot_ev ev, const unsigned kind, const int isa) {
  uint64_t ptr = ev.ptr;
  uint32_t cls = ev.cls;
  unsigned ts = hkt_tslot(ev.tid), slot = hkt_slot(cls);
  int found;
  struct ptr_ent *e = ptab_find(w, ptr, &found);   /* first: its line may be on its way from memory */

  /* Streams are apart, so the fields go out in the order that keeps the
   * fewest values alive: time, caller, thread, size, then the pointer and
   * the class (the HEAD byte last, when all its bits are known). */
  uint64_t t = ev.time_ns >> w->time_shift;
  S_VARINT(HKT_S_TIME, hkt_zz((int64_t)(t - w->m.tlast[ts])));
  w->m.tlast[ts] = t;
  unsigned g = HKT_G_PTR | HKT_G_CALLER;   /* MALLOC and FREE come here with a caller */
  if (kind == HKT_EV_MALLOC) g |= HKT_G_SIZE;
  if (kind == HKT_EV_REMOTE_PUSH) g = HKT_G_PTR | HKT_G_AUX | (ev.aux2 != 0) * HKT_G_AUX2 | (ev.caller != 0) * HKT_G_CALLER;
  _Static_assert(HKT_EV_MALLOC < HKT_H_KESC && HKT_EV_FREE < HKT_H_KESC && HKT_EV_REMOTE_PUSH < HKT_H_KESC,
                 "hot kinds fit the HEAD byte");
  unsigned head = kind;
  if (g & HKT_G_CALLER) {
    uint64_t *cl = &w->clast[ts * 64 + kind];
    if (*cl != ev.caller) {   /* else: the caller of the last such event, so its index too */
      uint32_t cidx = intern_caller(w, ev.caller), *cp = &w->m.cpred[ts * 64 + kind];
      *cl = ev.caller;
      if (cidx != *cp) {
        head |= HKT_H_CALLER;
        S_VARINT(HKT_S_CALLER, cidx);
        *cp = cidx;
      }
    }
  }
  if (ev.tid != w->m.prev_tid) {
    head |= HKT_H_TID;
    S_VARINT(HKT_S_TID, ev.tid);
    w->m.prev_tid = ev.tid;
  }
  if (kind == HKT_EV_REMOTE_PUSH) {
    S_VARINT(HKT_S_AUX, hkt_zz((int64_t)(ev.aux - hkt_aux_base(kind, ptr, 0))));
    w->m.apred[kind] = ev.aux;
    if (g & HKT_G_AUX2) S_VARINT(HKT_S_AUX, ev.aux2);
  }

  /* the pointer: its code pu to PTR (a FREE's to FREE_LO/HI), then a
   * FREE's thread slot (a byte) or the whole pointer (pu == HKT_P_ABS) to PTR */
  uint32_t predicted;
  uint64_t pu;
  if (kind == HKT_EV_MALLOC) {
    uint64_t size = ev.size;
    predicted = hkt_likely(size <= CLS_LUT_MAX) ? w->cls_lut[size]
                                                : hkt_predict_cls(HKT_EV_MALLOC, size, w->class_size, w->ncls);
    S_BYTE(HKT_S_SIZE_LO, size);
    S_VARINT(HKT_S_SIZE, size >> 8);
    hkt_rings *rg = &w->m.rings;
    uint64_t *ring = rg->ent + (size_t)slot * HKT_RING_CAP;
    uint32_t pos = e->val, top = rg->top[slot], lo = rg->lo[slot];
    if (found && e->state == P_FREED && e->tag == slot && pos >= lo && pos < top && ring[pos & (HKT_RING_CAP - 1)] == ptr) {
      /* hkt_ring_get and hkt_ring_take, with the ring's bounds in locals */
      uint32_t cursor = rg->cursor[slot];
      if (pos == top - 1) pu = HKT_P_RING;
      else if (pos == cursor + (uint32_t)rg->stride[slot]) pu = HKT_P_STRIDE;
      else pu = (uint64_t)(top - 1 - pos) << 2 | HKT_P_RING;
      ring[pos & (HKT_RING_CAP - 1)] = 0;
      rg->stride[slot] = (int32_t)(pos - cursor);
      rg->cursor[slot] = pos;
      if (pos == top - 1) {   /* else the entry at top - 1 holds a block: the top stays */
        top--;
        while (top > lo && !ring[(top - 1) & (HKT_RING_CAP - 1)]) top--;
        rg->top[slot] = top;
      }
    } else {
      int64_t d = (int64_t)(ptr - w->m.npred[slot]);
      pu = (d & 7) == 0 ? hkt_zz(d >> 3) << 2 | HKT_P_DELTA : HKT_P_ABS;
      w->m.npred[slot] = ptr;
    }
    S_VARINT(HKT_S_PTR, pu);
    if (hkt_unlikely(pu == HKT_P_ABS)) S_VARINT(HKT_S_PTR, ptr);
    ptab_set_live(w, e, ptr, cls, live_add(w, ts), ts);
  } else if (kind == HKT_EV_FREE) {
    predicted = w->m.lcls[ts];
    if (found && (e->state & P_LIVE)) {
      struct alloc_ent a = ptab_live(w, e);
      uint32_t at = a.k_slot & (HKT_TSLOTS - 1), k = a.k_slot >> 5;
      uint64_t rank = live_kill_rank(&w->wl[at], k, isa);
      pu = rank << 2 | (at == ts ? HKT_P_BACK : HKT_P_XBACK);
      S_BYTE(HKT_S_FREE_LO, pu);
      S_VARINT(HKT_S_FREE_HI, pu >> 8);
      if (at != ts) S_BYTE(HKT_S_PTR, at);
      predicted = a.cls;
    } else {
      int64_t d = (int64_t)(ptr - w->pred[slot]);
      pu = (d & 7) == 0 ? hkt_zz(d >> 3) << 2 | HKT_P_DELTA : HKT_P_ABS;
      S_BYTE(HKT_S_FREE_LO, pu);
      S_VARINT(HKT_S_FREE_HI, pu >> 8);
      if (hkt_unlikely(pu == HKT_P_ABS)) S_VARINT(HKT_S_PTR, ptr);
    }
    uint32_t pos = hkt_ring_push(&w->m.rings, slot, ptr);
    *e = (struct ptr_ent){ ptr, pos, (uint16_t)w->gen, P_FREED, (uint8_t)slot };
  } else {
    (void)e;
    (void)found;
    predicted = w->m.lcls[ts];
    int64_t d = (int64_t)(ptr - w->pred[slot]);
    pu = (d & 7) == 0 ? hkt_zz(d >> 3) << 2 | HKT_P_DELTA : HKT_P_ABS;
    S_VARINT(HKT_S_PTR, pu);
    if (hkt_unlikely(pu == HKT_P_ABS)) S_VARINT(HKT_S_PTR, ptr);
  }
  w->pred[slot] = ptr;

  if (cls != predicted) {
    g |= HKT_G_CLS;
    S_VARINT(HKT_S_CLS, cls == HKT_NO_CLASS ? 0 : (uint64_t)cls + 1);
  }
  if (cls != HKT_NO_CLASS) w->m.lcls[ts] = cls;
  if (hkt_unlikely(g != w->m.fpred[kind])) {
    head |= HKT_H_FLAGS;
    S_VARINT(HKT_S_FLAGS, g);
    w->m.fpred[kind] = (uint16_t)g;
  }
  S_BYTE(HKT_S_HEAD, head);

  w->next_seq++;
  if (hkt_unlikely(++w->n >= w->n_check)) return put_check(w, 0);
  return 0;
}

/* Each its own function, so that each saves only the registers it uses;
 * the rec_ ones take a spool record and its time. A FREE's rank counts
 * bits: with the popcnt instruction where there is one (the build targets
 * x86-64 without it). */
#define HOT_PATHS(name, HOT, ...)                                                                              \
  static __attribute__((noinline)) int name##_malloc(hkt_writer *w, __VA_ARGS__) {                               \
    return put_hot(w, HOT, HKT_EV_MALLOC, 0);                                                                    \
  }                                                                                                              \
  static __attribute__((noinline)) int name##_free(hkt_writer *w, __VA_ARGS__) {                                 \
    return put_hot(w, HOT, HKT_EV_FREE, 0);                                                                      \
  }                                                                                                              \
  static __attribute__((noinline)) int name##_push(hkt_writer *w, __VA_ARGS__) {                                 \
    return put_hot(w, HOT, HKT_EV_REMOTE_PUSH, 0);                                                               \
  }                                                                                                              \
  static __attribute__((noinline, target("popcnt"))) int name##_free_popcnt(hkt_writer *w, __VA_ARGS__) {        \
    return put_hot(w, HOT, HKT_EV_FREE, 1);                                                                      \
  }
HOT_PATHS(put, hot_of_event(ev), const hkt_event *ev)
HOT_PATHS(rec, hot_of_rec(r, time_ns), const hkt_rec *r, uint64_t time_ns)
#undef HOT_PATHS
static __attribute__((noinline)) int put_general(hkt_writer *w, const hkt_event *ev, unsigned kind);

/* An event to its path; rare: its fields no hot path writes (non-zero). */
/* The hot path that takes an event of these fields: the hot kinds with no
 * field but theirs (HKT_EV_NONE: the general path, for anything else).
 * One rule for events and for spool records (_hkt_writer_put_rec). */
static inline __attribute__((always_inline)) unsigned hot_kind(const hkt_writer *w, unsigned kind, uint64_t rare,
                                                              uint64_t ptr, uint64_t size, uint64_t caller,
                                                              uint64_t aux, uint64_t aux2) {
  if (hkt_unlikely(rare || w->n == 0 || ptr == 0)) return HKT_EV_NONE;
  if (kind == HKT_EV_MALLOC) return hkt_likely(size != 0 && caller != 0 && !(aux | aux2)) ? kind : HKT_EV_NONE;
  if (kind == HKT_EV_FREE) return hkt_likely(caller != 0 && !(size | aux | aux2)) ? kind : HKT_EV_NONE;
  if (kind == HKT_EV_REMOTE_PUSH && aux != 0 && !size) return kind;
  return HKT_EV_NONE;
}

static inline __attribute__((always_inline)) int put_dispatch(hkt_writer *w, const hkt_event *ev, uint64_t rare) {
  if (hkt_unlikely(w->err)) return w->err;
  unsigned kind = ev->kind;
  switch (hot_kind(w, kind, rare, ev->ptr, ev->size, ev->caller, ev->aux, ev->aux2)) {
  case HKT_EV_MALLOC: return put_malloc(w, ev);
  case HKT_EV_FREE: return w->popcnt ? put_free_popcnt(w, ev) : put_free(w, ev);
  case HKT_EV_REMOTE_PUSH: return put_push(w, ev);
  }
  if (hkt_unlikely(kind == 0 || kind >= 64)) return HKT_ERR_ARG;
  return put_general(w, ev, kind);
}

/* Internal (the spool drain): as hkt_writer_put, but 1 when this event
 * completed a frame that is now written. */
int hkt_writer_put_framed(hkt_writer *w, const hkt_event *ev) {
  if (hkt_unlikely(!w || !ev)) return HKT_ERR_ARG;
  return put_dispatch(w, ev, ev->aux3 | ev->fn | ev->stack_id | (uintptr_t)ev->str | (uintptr_t)ev->bid);
}
/* Any other record: as an event (a function of its own, so that the
 * dispatch below saves no register and sets up no frame). */
static __attribute__((noinline)) int rec_general(hkt_writer *w, const hkt_rec *r, uint64_t time_ns) {
  hot_ev h = hot_of_rec(r, time_ns);
  hkt_event ev = { .kind = r->kind, .fn = r->fn, .cls = h.cls, .tid = h.tid, .ptr = h.ptr, .size = h.size,
                   .aux = h.aux, .aux2 = h.aux2, .caller = h.caller, .time_ns = time_ns };
  return put_dispatch(w, &ev, ev.fn);
}

/* Internal: hkt_writer_put_framed of the event of spool record r (a
 * record with no extension: aux3, stack, string and build-id all 0) at
 * time_ns; w and r valid. The hot kinds are encoded from the record in
 * place, as put_dispatch would route the event. */
int _hkt_writer_put_rec(hkt_writer *w, const hkt_rec *r, uint64_t time_ns) {
  if (hkt_unlikely(w->err)) return w->err;
  switch (hot_kind(w, r->kind, r->fn, r->ptr, r->size, r->caller, r->aux, r->aux2)) {
  case HKT_EV_MALLOC: return rec_malloc(w, r, time_ns);
  case HKT_EV_FREE: return w->popcnt ? rec_free_popcnt(w, r, time_ns) : rec_free(w, r, time_ns);
  case HKT_EV_REMOTE_PUSH: return rec_push(w, r, time_ns);
  }
  return rec_general(w, r, time_ns);
}

/* Any event, field by field. */
static int put_general(hkt_writer *w, const hkt_event *ev, unsigned kind) {
  uint64_t t = ev->time_ns >> w->time_shift;
  if (hkt_unlikely(!w->n)) {
    w->first_seq = w->next_seq;
    w->t0 = t;
    for (unsigned i = 0; i < HKT_TSLOTS; i++) w->m.tlast[i] = t;
  }
  unsigned ts = hkt_tslot(ev->tid);

  unsigned g = (ev->ptr != 0) * HKT_G_PTR | (ev->size != 0) * HKT_G_SIZE | (ev->aux != 0) * HKT_G_AUX |
               (ev->aux2 != 0) * HKT_G_AUX2 | (ev->aux3 != 0) * HKT_G_AUX3 | (ev->fn != 0) * HKT_G_FN |
               (ev->caller != 0) * HKT_G_CALLER;
  if (hkt_unlikely(ev->stack_id | (ev->str != NULL) | (ev->bid != NULL))) {
    if (ev->stack_id) g |= HKT_G_STACK;
    if (ev->str) g |= HKT_G_STR;
    if (ev->bid && ev->bid_len) g |= HKT_G_BID;
  }
  uint32_t predicted = predict_v2(w, ev, kind, ts);
  if (g & HKT_G_PTR) predicted = put_ptr(w, ev, kind, ts, predicted);
  if (ev->cls != predicted) {
    g |= HKT_G_CLS;
    S_VARINT(HKT_S_CLS, ev->cls == HKT_NO_CLASS ? 0 : (uint64_t)ev->cls + 1);
  }
  if (ev->cls != HKT_NO_CLASS) w->m.lcls[ts] = ev->cls;

  unsigned head = kind < HKT_H_KESC ? kind : HKT_H_KESC;
  if (hkt_unlikely(head == HKT_H_KESC)) S_BYTE(HKT_S_FLAGS, kind);
  if (hkt_unlikely(g != w->m.fpred[kind])) {
    head |= HKT_H_FLAGS;
    S_VARINT(HKT_S_FLAGS, g);
    w->m.fpred[kind] = (uint16_t)g;
  }
  if (ev->tid != w->m.prev_tid) {
    head |= HKT_H_TID;
    S_VARINT(HKT_S_TID, ev->tid);
    w->m.prev_tid = ev->tid;
  }
  if (g & HKT_G_CALLER) {
    uint32_t idx = intern_caller(w, ev->caller), *cp = &w->m.cpred[ts * 64 + kind];
    w->clast[ts * 64 + kind] = ev->caller;
    if (idx != *cp) {
      head |= HKT_H_CALLER;
      S_VARINT(HKT_S_CALLER, idx);
      *cp = idx;
    }
  }
  S_BYTE(HKT_S_HEAD, head);
  S_VARINT(HKT_S_TIME, hkt_zz((int64_t)(t - w->m.tlast[ts])));
  w->m.tlast[ts] = t;
  if (g & HKT_G_SIZE) {
    S_BYTE(HKT_S_SIZE_LO, ev->size);
    S_VARINT(HKT_S_SIZE, ev->size >> 8);
  }
  if (hkt_unlikely(g & (HKT_G_AUX | HKT_G_AUX2 | HKT_G_AUX3 | HKT_G_FN | HKT_G_STACK))) {
    if (g & HKT_G_AUX) {
      S_VARINT(HKT_S_AUX, hkt_zz((int64_t)(ev->aux - hkt_aux_base(kind, ev->ptr, w->m.apred[kind]))));
      w->m.apred[kind] = ev->aux;
    }
    if (g & HKT_G_AUX2) S_VARINT(HKT_S_AUX, ev->aux2);
    if (g & HKT_G_AUX3) S_VARINT(HKT_S_AUX, ev->aux3);
    if (g & HKT_G_FN) S_VARINT(HKT_S_AUX, ev->fn);
    if (g & HKT_G_STACK) S_VARINT(HKT_S_AUX, ev->stack_id);
  }
  if (hkt_unlikely(g & (HKT_G_STR | HKT_G_BID))) {
    if (g & HKT_G_STR) {
      size_t n = strnlen(ev->str, HKT_MAX_STR);
      hkt_buf_str(&w->s[HKT_S_STR], ev->str, n);
    }
    if (g & HKT_G_BID) {
      uint32_t n = ev->bid_len > 255 ? 255 : ev->bid_len;
      hkt_buf_varint(&w->s[HKT_S_STR], n);
      hkt_buf_put(&w->s[HKT_S_STR], ev->bid, n);
    }
  }
  w->next_seq++;
  if (hkt_unlikely(++w->n >= w->n_check || (g & HKT_G_STR))) return put_check(w, g & HKT_G_STR);   /* big strings: bound the frame's bytes now */
  return 0;
}

int hkt_writer_put(hkt_writer *w, const hkt_event *ev) {
  int e = hkt_writer_put_framed(w, ev);
  return e > 0 ? 0 : e;
}

int hkt_writer_stack(hkt_writer *w, uint32_t id, const uint64_t *frames, uint32_t n) {
  if (!w || !id || (n && !frames)) return HKT_ERR_ARG;
  if (w->err) return w->err;
  if (n > HKT_MAX_STACK_DEPTH) n = HKT_MAX_STACK_DEPTH;
  hkt_buf_varint(&w->stacks, id);
  hkt_buf_varint(&w->stacks, n);
  uint64_t prev = 0;
  for (uint32_t i = 0; i < n; i++) {
    hkt_buf_varint(&w->stacks, hkt_zz((int64_t)(frames[i] - prev)));
    prev = frames[i];
  }
  w->nstacks++;
  return w->stacks.failed ? fail(w, HKT_ERR_NOMEM) : 0;
}

int hkt_writer_flush(hkt_writer *w) {
  if (!w) return HKT_ERR_ARG;
  return flush_frame(w);
}

int hkt_writer_close(hkt_writer *w, int complete) {
  if (!w) return HKT_ERR_ARG;
  int e = flush_frame(w);
  if (!HKT_IS_ERR(e) && complete) {
    hkt_buf *f = &w->frame;
    f->len = 0;
    hkt_buf_put(f, HKT_MAGIC_END, 4);
    hkt_buf_varint(f, w->next_seq);
    e = f->failed ? fail(w, HKT_ERR_NOMEM) : write_frame(w, f->p, f->len, NULL, 0);
  }
  int saved = errno;
  if (close(w->fd) && !HKT_IS_ERR(e) && errno != EINTR) e = HKT_ERR_IO;
  else errno = saved;
  writer_free(w);
  return HKT_IS_ERR(e) ? e : 0;
}

uint64_t hkt_writer_bytes(const hkt_writer *w) { return w ? w->bytes : 0; }
uint64_t hkt_writer_events(const hkt_writer *w) { return w ? w->next_seq : 0; }

/* Internal: errno of the writer's first I/O error. */
int hkt_writer_errno(const hkt_writer *w) { return w ? w->err_errno : 0; }

int hkt_writer_append(hkt_writer **out, const char *path, uint64_t *next_seq) {
  if (!out || !path) return HKT_ERR_ARG;
  *out = NULL;
  hkt_reader *r = NULL;
  int e = hkt_reader_open(&r, path);
  if (HKT_IS_ERR(e)) { hkt_reader_close(r); return e; }
  hkt_event ev;
  while ((e = hkt_reader_next(r, &ev)) > 0) {}
  /* a cut or damaged tail is dropped: keep what reads */
  uint64_t keep = hkt_reader_data_end(r), events = hkt_reader_data_events(r);
  const hkt_header *hh = hkt_reader_header(r);
  if (hh->version != HKT_FORMAT_VERSION) {   /* frames of this version would not read after its header */
    hkt_reader_close(r);
    return HKT_ERR_VERSION;
  }
  uint32_t shift = hh->time_shift, ncls = hh->num_classes;
  uint32_t csz[64];
  memcpy(csz, hh->class_size, sizeof csz);
  hkt_reader_close(r);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return HKT_ERR_IO;
  if (ftruncate(fd, (off_t)keep) || lseek(fd, (off_t)keep, SEEK_SET) < 0) {
    int saved = errno;
    close(fd);
    errno = saved;
    return HKT_ERR_IO;
  }
  e = writer_new(out, fd);
  if (HKT_IS_ERR(e)) { close(fd); return e; }
  (*out)->time_shift = shift;
  set_classes(*out, ncls, csz);
  (*out)->next_seq = events;
  (*out)->bytes = keep;
  if (next_seq) *next_seq = events;
  return 0;
}

/* Internal: events put since the last frame was written. */
uint32_t hkt_writer_pending(const hkt_writer *w) { return w ? w->n : 0; }
