/* writer.c — encode events into zstd frames (docs/trace-format.md).
 *
 * Events of a frame are split into byte streams by field (kinds, flags,
 * threads, times, ...) and the streams are compressed together as one zstd
 * frame with a content checksum. Each frame is self-contained: predictors
 * and the callsite table start afresh, so a file cut after any whole frame
 * reads to there, and recovery can append frames to it. Memory comes from
 * hkt_mem: the writer runs inside recorded processes. */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>
#include "hkt_internal.h"

#define ATAB_SIZE (1u << 14)
#define CLS_LUT_MAX 4096u   /* class prediction by table for sizes up to this */

/* Most bytes one event can add to each stream (STR is checked per put):
 * the streams are sized for a whole frame when it starts, so encoding
 * writes without capacity checks. */
static const uint8_t stream_max[HKT_S__COUNT] = {
  [HKT_S_KIND] = 1, [HKT_S_FLAGS] = 2, [HKT_S_TID] = 5, [HKT_S_TIME] = 10, [HKT_S_CLS] = 5,
  [HKT_S_PTR] = 20, [HKT_S_SIZE] = 10, [HKT_S_AUX] = 48, [HKT_S_CALLER] = 5, [HKT_S_STR] = 0,
};

struct hkt_writer {
  int fd;
  int err;                  /* sticky: first error */
  int err_errno;
  int level;
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
  uint64_t first_seq, t0, prev_t;
  hkt_buf s[HKT_S__COUNT];
  hkt_buf stacks;
  uint32_t nstacks;
  uint64_t pred[HKT_PTR_SLOTS];
  hkt_freed freed;
  /* callsite interning: open addressing; entries of older frames differ
   * by gen, so nothing is cleared per frame */
  struct caller_ent { uint64_t caller; uint32_t gen, idx; } *ctab;
  uint32_t ccap;            /* power of two, > 2 * frame_events */
  uint64_t *callers;        /* table in order of first use */
  uint32_t ncallers;
  /* allocations of this frame, for FREE back-references: ptr -> ordinal,
   * direct-mapped and small enough to stay in cache (a block pushed out
   * is just written as a delta); older frames' entries differ by gen */
  struct alloc_ent { uint64_t ptr; uint32_t ord, gen; } *atab;
  uint32_t *acls;           /* class of each allocation ordinal */
  uint32_t nalloc, gen;

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
  return w->err;
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
 * a buffer big enough for any outcome, and write it with one call. */
static int write_frame(hkt_writer *w, const uint8_t *content, size_t len) {
  if (w->err) return w->err;
  size_t bound = ZSTD_compressBound(len);
  if (w->out_cap < bound) {
    size_t cap = w->out_cap ? w->out_cap : 1u << 16;
    while (cap < bound) cap *= 2;
    uint8_t *o = hkt_mem_alloc(cap);
    if (!o) return fail(w, HKT_ERR_NOMEM);
    hkt_mem_free(w->out);
    w->out = o;
    w->out_cap = cap;
  }
  size_t n = ZSTD_compress2(w->cctx, w->out, w->out_cap, content, len);
  if (ZSTD_isError(n)) return fail(w, HKT_ERR_ZSTD);
  return write_all(w, w->out, n);
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
  for (uint32_t i = 0; i < nm; i++) {
    const hkt_module *m = &h->modules[i];
    size_t n = m->path ? strlen(m->path) : 0;
    hkt_buf_str(b, m->path ? m->path : "", n > HKT_MAX_STR ? HKT_MAX_STR : n);
    hkt_buf_varint(b, m->base);
    hkt_buf_varint(b, m->size);
    uint32_t bl = m->build_id_len > 40 ? 40 : m->build_id_len;
    hkt_buf_varint(b, bl);
    hkt_buf_put(b, m->build_id, bl);
  }
}

static void frame_reset(hkt_writer *w) {
  for (int i = 0; i < HKT_S__COUNT; i++) w->s[i].len = 0;
  w->stacks.len = 0;
  w->nstacks = 0;
  w->ncallers = 0;
  w->nalloc = 0;
  if (++w->gen == 0) {   /* wrapped: entries of gen 0 would look current */
    memset(w->atab, 0, (size_t)ATAB_SIZE * sizeof *w->atab);
    memset(w->ctab, 0, (size_t)w->ccap * sizeof *w->ctab);
    w->gen = 1;
  }
  memset(w->pred, 0, sizeof w->pred);
  memset(w->freed.n, 0, sizeof w->freed.n);
  memset(w->freed.top, 0, sizeof w->freed.top);
  w->n = 0;
}

/* Tables and streams for frames of frame_events events (fresh memory is
 * zero: gen 1 starts clean). */
static int alloc_tables(hkt_writer *w) {
  uint32_t cap = 1024;
  while (cap < 2 * w->frame_events + 2) cap *= 2;
  hkt_mem_free(w->ctab);
  hkt_mem_free(w->callers);
  hkt_mem_free(w->atab);
  hkt_mem_free(w->acls);
  w->ccap = cap;
  w->atab = hkt_mem_alloc((size_t)ATAB_SIZE * sizeof *w->atab);
  w->acls = hkt_mem_alloc((size_t)(w->frame_events + 1) * sizeof *w->acls);
  w->gen = 1;
  w->ctab = hkt_mem_alloc((size_t)cap * sizeof *w->ctab);
  w->callers = hkt_mem_alloc((size_t)(w->frame_events + 1) * sizeof *w->callers);
  int failed = !w->ctab || !w->callers || !w->atab || !w->acls;
  for (int i = 0; i < HKT_S__COUNT; i++) {
    hkt_buf_release(&w->s[i]);
    if (stream_max[i] && hkt_buf_reserve(&w->s[i], (size_t)stream_max[i] * w->frame_events + 64)) failed = 1;
  }
  return failed ? HKT_ERR_NOMEM : 0;
}

static int writer_new(hkt_writer **out, int fd) {
  *out = NULL;
  hkt_writer *w = hkt_mem_alloc(sizeof *w);
  if (!w) return HKT_ERR_NOMEM;
  w->fd = fd;
  w->level = HKT_DEFAULT_LEVEL;
  w->frame_events = HKT_DEFAULT_FRAME_EVENTS;
  w->cctx = hkt_zstd_cctx();
  w->out_cap = 1u << 16;
  w->out = hkt_mem_alloc(w->out_cap);
  set_classes(w, 0, w->class_size);
  if (!w->cctx || !w->out || alloc_tables(w)) {
    for (int i = 0; i < HKT_S__COUNT; i++) hkt_buf_release(&w->s[i]);
    hkt_mem_free(w->ctab);
    hkt_mem_free(w->callers);
    hkt_mem_free(w->atab);
    hkt_mem_free(w->acls);
    ZSTD_freeCCtx(w->cctx);
    hkt_mem_free(w->out);
    hkt_mem_free(w);
    return HKT_ERR_NOMEM;
  }
  ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, w->level);
  *out = w;
  return 0;
}

static void writer_free(hkt_writer *w) {
  for (int i = 0; i < HKT_S__COUNT; i++) hkt_buf_release(&w->s[i]);
  hkt_buf_release(&w->stacks);
  hkt_buf_release(&w->frame);
  hkt_mem_free(w->ctab);
  hkt_mem_free(w->callers);
  hkt_mem_free(w->atab);
  hkt_mem_free(w->acls);
  hkt_mem_free(w->out);
  ZSTD_freeCCtx(w->cctx);
  hkt_mem_free(w);
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
  int e = w->frame.failed ? HKT_ERR_NOMEM : write_frame(w, w->frame.p, w->frame.len);
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
  w->level = level;
  ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
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

/* Assemble the frame content: counts, tables, stream lengths, streams. */
static int flush_frame(hkt_writer *w) {
  if (w->err) return w->err;
  if (!w->n && !w->nstacks) return 0;
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
  for (int i = 0; i < HKT_S__COUNT; i++) hkt_buf_put(f, w->s[i].p, w->s[i].len);
  int failed = f->failed || w->stacks.failed;
  for (int i = 0; i < HKT_S__COUNT; i++) failed |= w->s[i].failed;
  if (failed) return fail(w, HKT_ERR_NOMEM);
  int e = write_frame(w, f->p, f->len);
  frame_reset(w);
  return e;
}

static int frame_done(hkt_writer *w) {
  int e = flush_frame(w);
  return HKT_IS_ERR(e) ? e : 1;
}

/* Unchecked varint into a stream sized for the frame (stream_max). */
static inline uint8_t *put_varint(uint8_t *o, uint64_t v) {
  if (hkt_likely(v < 0x80)) { *o = (uint8_t)v; return o + 1; }
  while (v >= 0x80) { *o++ = (uint8_t)(v | 0x80); v >>= 7; }
  *o++ = (uint8_t)v;
  return o;
}
#define S_END(i) (w->s[i].p + w->s[i].len)
#define S_VARINT(i, v) (w->s[i].len = (size_t)(put_varint(S_END(i), (v)) - w->s[i].p))
#define S_BYTE(i, v) (w->s[i].p[w->s[i].len++] = (uint8_t)(v))

/* Internal (the spool drain): as hkt_writer_put, but 1 when this event
 * completed a frame that is now written. */
int hkt_writer_put_framed(hkt_writer *w, const hkt_event *ev) {
  if (hkt_unlikely(!w || !ev)) return HKT_ERR_ARG;
  if (hkt_unlikely(w->err)) return w->err;
  unsigned kind = ev->kind;
  uint64_t t = ev->time_ns >> w->time_shift;
  if (hkt_unlikely(!w->n)) { w->first_seq = w->next_seq; w->t0 = t; w->prev_t = t; }

  uint8_t fl = (uint8_t)((ev->ptr != 0) * HKT_F_PTR | (ev->size != 0) * HKT_F_SIZE | (ev->aux != 0) * HKT_F_AUX |
                         (ev->aux2 != 0) * HKT_F_AUX2 | (ev->aux3 != 0) * HKT_F_AUX3 | (ev->fn != 0) * HKT_F_FN |
                         (ev->caller != 0) * HKT_F_CALLER);
  uint8_t f2 = 0;
  if (hkt_unlikely(ev->stack_id | (ev->str != NULL) | (ev->bid != NULL))) {
    if (ev->stack_id) f2 |= HKT_F2_STACK;
    if (ev->str) f2 |= HKT_F2_STR;
    if (ev->bid && ev->bid_len) f2 |= HKT_F2_BID;
    if (f2) fl |= HKT_F_EXT;
  }

  S_BYTE(HKT_S_KIND, kind);
  S_BYTE(HKT_S_FLAGS, fl);
  if (hkt_unlikely(f2)) S_BYTE(HKT_S_FLAGS, f2);
  S_VARINT(HKT_S_TID, ev->tid);
  S_VARINT(HKT_S_TIME, hkt_zz((int64_t)(t - w->prev_t)));
  w->prev_t = t;
  uint32_t predicted = predict_cls(w, kind, ev->size);
  if (fl & HKT_F_PTR) {
    /* A FREE of a block allocated earlier in this frame names it by
     * allocation distance (u = d << 2 | 3), and its class comes with it.
     * Other pointers: the delta to the last pointer of the same class (a
     * block freed is usually the next one handed out): multiples of 8 drop
     * their zero bits (u even); anything else is escaped (u = 1, then the
     * pointer whole). */
    uint64_t ptr = ev->ptr;
    struct alloc_ent *e = &w->atab[(uint32_t)((ptr * 0x9e3779b97f4a7c15ull) >> 40) & (ATAB_SIZE - 1)];
    unsigned slot = hkt_slot(ev->cls);
    int is_alloc = hkt_is_alloc(kind), depth;
    if (kind == HKT_EV_FREE) {
      if (e->gen == w->gen && e->ptr == ptr) {
        S_VARINT(HKT_S_PTR, ((uint64_t)(w->nalloc - 1 - e->ord) << 2) | 3);
        predicted = w->acls[e->ord];
        goto ptr_done;
      }
    } else if (is_alloc && (depth = hkt_freed_find(&w->freed, slot, ptr)) >= 0) {
      /* an allocation that hands out a block freed lately: its depth */
      S_VARINT(HKT_S_PTR, ((uint64_t)depth << 2) | 3);
      hkt_freed_take(&w->freed, slot, (unsigned)depth);
      goto ptr_done;
    }
    int64_t d = (int64_t)(ptr - w->pred[slot]);
    if ((d & 7) == 0) S_VARINT(HKT_S_PTR, hkt_zz(d >> 3) << 1);
    else { S_BYTE(HKT_S_PTR, 1); S_VARINT(HKT_S_PTR, ptr); }
  ptr_done:
    w->pred[slot] = ptr;
    if (kind == HKT_EV_FREE) hkt_freed_push(&w->freed, slot, ptr);
    if (is_alloc) {
      e->ptr = ptr;
      e->gen = w->gen;
      e->ord = w->nalloc;
      w->acls[w->nalloc++] = ev->cls;
    }
  }
  S_VARINT(HKT_S_CLS, hkt_cls_encode(ev->cls, predicted));
  if (fl & HKT_F_SIZE) S_VARINT(HKT_S_SIZE, ev->size);
  if (hkt_unlikely(fl & (HKT_F_AUX | HKT_F_AUX2 | HKT_F_AUX3 | HKT_F_FN) || f2 & HKT_F2_STACK)) {
    if (fl & HKT_F_AUX) S_VARINT(HKT_S_AUX, ev->aux);
    if (fl & HKT_F_AUX2) S_VARINT(HKT_S_AUX, ev->aux2);
    if (fl & HKT_F_AUX3) S_VARINT(HKT_S_AUX, ev->aux3);
    if (fl & HKT_F_FN) S_VARINT(HKT_S_AUX, ev->fn);
    if (f2 & HKT_F2_STACK) S_VARINT(HKT_S_AUX, ev->stack_id);
  }
  if (fl & HKT_F_CALLER) S_VARINT(HKT_S_CALLER, intern_caller(w, ev->caller));
  if (hkt_unlikely(f2 & (HKT_F2_STR | HKT_F2_BID))) {
    if (f2 & HKT_F2_STR) {
      size_t n = strnlen(ev->str, HKT_MAX_STR);
      hkt_buf_str(&w->s[HKT_S_STR], ev->str, n);
    }
    if (f2 & HKT_F2_BID) {
      uint32_t n = ev->bid_len > 255 ? 255 : ev->bid_len;
      hkt_buf_varint(&w->s[HKT_S_STR], n);
      hkt_buf_put(&w->s[HKT_S_STR], ev->bid, n);
    }
  }
  w->n++;
  w->next_seq++;
  if (hkt_unlikely(w->n >= w->frame_events)) return frame_done(w);
  if (hkt_unlikely((w->n & 255) == 0 || (f2 & HKT_F2_STR))) {   /* big strings or many events: bound the frame's bytes */
    size_t bytes = w->stacks.len;
    for (int i = 0; i < HKT_S__COUNT; i++) bytes += w->s[i].len;
    if (bytes >= HKT_DEFAULT_FRAME_BYTES) return frame_done(w);
  }
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
    e = f->failed ? fail(w, HKT_ERR_NOMEM) : write_frame(w, f->p, f->len);
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
