/* hkt_internal.h — what the trace writer, reader, recorder and recovery
 * share: the frame layout constants of docs/trace-format.md, varints, and a
 * malloc-free memory source.
 *
 * Everything in trace/ that can run inside a recorded process (the writer,
 * the spool drain) takes its memory from hkt_mem_alloc (anonymous mmap), never
 * from malloc: in a process running on libhakmem, malloc is the allocator
 * being recorded. */
#ifndef HKT_INTERNAL_H
#define HKT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "hakmem/trace.h"

#define HKT_INTERNAL __attribute__((visibility("hidden")))
#define hkt_likely(x)   __builtin_expect(!!(x), 1)
#define hkt_unlikely(x) __builtin_expect(!!(x), 0)

/* ---- frames: the first 4 bytes of each frame's content ---- */
#define HKT_MAGIC_HEADER "HKTH"
#define HKT_MAGIC_EVENTS "HKTE"
#define HKT_MAGIC_END    "HKTZ"

/* The byte streams of an event frame, in file order. */
enum {
  HKT_S_KIND, HKT_S_FLAGS, HKT_S_TID, HKT_S_TIME, HKT_S_CLS,
  HKT_S_PTR, HKT_S_SIZE, HKT_S_AUX, HKT_S_CALLER, HKT_S_STR,
  HKT_S__COUNT
};

/* FLAGS byte: which optional fields an event carries (non-zero / present). */
#define HKT_F_PTR    0x01
#define HKT_F_SIZE   0x02
#define HKT_F_AUX    0x04
#define HKT_F_AUX2   0x08
#define HKT_F_AUX3   0x10
#define HKT_F_FN     0x20
#define HKT_F_CALLER 0x40
#define HKT_F_EXT    0x80   /* a second FLAGS byte follows */
#define HKT_F2_STACK 0x01
#define HKT_F2_STR   0x02
#define HKT_F2_BID   0x04

#define HKT_PTR_SLOTS 65    /* ptr predictors: one per class < 64, one for the rest */

/* Allocation calls: their blocks can be named again by a FREE (back-reference). */
static inline int hkt_is_alloc(unsigned kind) {
  return kind == HKT_EV_MALLOC || kind == HKT_EV_CALLOC || kind == HKT_EV_REALLOC || kind == HKT_EV_ALIGNED;
}

/* The class a writer and a reader both expect an event to have: the
 * allocation's class for a FREE that names it, the smallest class that fits
 * for MALLOC/REALLOC/ALIGNED (header class table), none otherwise. */
static inline uint32_t hkt_predict_cls(unsigned kind, uint64_t size, const uint32_t *class_size, uint32_t ncls) {
  if (kind != HKT_EV_MALLOC && kind != HKT_EV_REALLOC && kind != HKT_EV_ALIGNED) return HKT_NO_CLASS;
  uint32_t lo = 0, hi = ncls;
  while (lo < hi) {   /* first class with block size >= size (sizes increase) */
    uint32_t mid = (lo + hi) / 2;
    if (class_size[mid] < size) lo = mid + 1;
    else hi = mid;
  }
  return lo < ncls ? lo : HKT_NO_CLASS;
}
/* The blocks freed last in each class (a thread cache hands them out again,
 * last in first out): an allocation that returns one of them is written as
 * its depth in this stack. Writer and reader keep the same stacks. */
#define HKT_FREED_DEPTH 16   /* a power of two: the stacks are rings */
typedef struct hkt_freed {
  uint64_t ptr[HKT_PTR_SLOTS][HKT_FREED_DEPTH];
  uint8_t top[HKT_PTR_SLOTS], n[HKT_PTR_SLOTS];
} hkt_freed;
static inline unsigned hkt_slot(uint32_t cls) { return cls < HKT_PTR_SLOTS - 1 ? cls : HKT_PTR_SLOTS - 1; }
#define HKT_RING(i) ((i) & (HKT_FREED_DEPTH - 1))
/* Push; a full stack forgets its oldest entry. */
static inline void hkt_freed_push(hkt_freed *f, unsigned slot, uint64_t ptr) {
  f->top[slot] = (uint8_t)HKT_RING(f->top[slot] + 1);
  f->ptr[slot][f->top[slot]] = ptr;
  if (f->n[slot] < HKT_FREED_DEPTH) f->n[slot]++;
}
/* Depth of ptr (0 = freed last), or -1. */
static inline int hkt_freed_find(const hkt_freed *f, unsigned slot, uint64_t ptr) {
  for (unsigned d = 0; d < f->n[slot]; d++)
    if (f->ptr[slot][HKT_RING(f->top[slot] - d)] == ptr) return (int)d;
  return -1;
}
/* Take the entry at `depth` out (depth < n); the ones above it move down. */
static inline uint64_t hkt_freed_take(hkt_freed *f, unsigned slot, unsigned depth) {
  uint64_t *s = f->ptr[slot];
  unsigned t = f->top[slot];
  uint64_t p = s[HKT_RING(t - depth)];
  for (unsigned d = depth; d > 0; d--) s[HKT_RING(t - d)] = s[HKT_RING(t - d + 1)];
  f->top[slot] = (uint8_t)HKT_RING(t - 1);
  f->n[slot]--;
  return p;
}

static inline uint64_t hkt_cls_encode(uint32_t cls, uint32_t predicted) {
  return cls == predicted ? 0 : cls == HKT_NO_CLASS ? 1 : (uint64_t)cls + 2;
}

/* Limits every reader enforces, so that memory stays bounded on any input. */
#define HKT_MAX_FRAME_BYTES  (64u << 20)   /* decompressed content of one frame */
#define HKT_MAX_STR          4096u
#define HKT_MAX_MODULES      4096u
#define HKT_MAX_STACK_DEPTH  256u
#define HKT_MAX_STACK_FRAMES (8u << 20)    /* all stacks of a trace together */

/* Defaults of the writer. */
#define HKT_DEFAULT_FRAME_EVENTS (64u << 10)
#define HKT_DEFAULT_FRAME_BYTES  (8u << 20)
#define HKT_DEFAULT_LEVEL        3
#define HKT_RECORD_LEVEL         1     /* the in-process recorder's writer */

/* ---- memory: anonymous mmap, page granular; never malloc ---- */
HKT_INTERNAL void *hkt_mem_alloc(size_t n);          /* zeroed; NULL on failure */
HKT_INTERNAL void  hkt_mem_free(void *p);
HKT_INTERNAL void *hkt_mem_realloc(void *p, size_t n);

/* ---- a growable byte buffer on hkt_mem ---- */
typedef struct hkt_buf { uint8_t *p; size_t len, cap; int failed; } hkt_buf;
HKT_INTERNAL int  hkt_buf_reserve(hkt_buf *b, size_t extra);
HKT_INTERNAL void hkt_buf_release(hkt_buf *b);
static inline void hkt_buf_put(hkt_buf *b, const void *src, size_t n) {
  if (!n) return;
  if (hkt_unlikely(b->cap - b->len < n) && hkt_buf_reserve(b, n)) return;
  memcpy(b->p + b->len, src, n);
  b->len += n;
}
static inline void hkt_buf_varint(hkt_buf *b, uint64_t v) {
  if (hkt_unlikely(b->cap - b->len < 10) && hkt_buf_reserve(b, 10)) return;
  uint8_t *o = b->p + b->len;
  while (v >= 0x80) { *o++ = (uint8_t)(v | 0x80); v >>= 7; }
  *o++ = (uint8_t)v;
  b->len = (size_t)(o - b->p);
}
static inline void hkt_buf_byte(hkt_buf *b, uint8_t v) {
  if (hkt_unlikely(b->cap == b->len) && hkt_buf_reserve(b, 1)) return;
  b->p[b->len++] = v;
}
static inline void hkt_buf_str(hkt_buf *b, const char *s, size_t n) {
  hkt_buf_varint(b, n);
  hkt_buf_put(b, s, n);
}

static inline uint64_t hkt_zz(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int64_t hkt_unzz(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

/* ---- a bounded cursor over decoded bytes ---- */
typedef struct hkt_cur { const uint8_t *p, *end; int bad; } hkt_cur;
static inline uint64_t hkt_get_varint(hkt_cur *c) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (hkt_unlikely(c->p >= c->end)) { c->bad = 1; return 0; }
    uint8_t b = *c->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (hkt_unlikely(shift == 63 && b > 1)) { c->bad = 1; return 0; }
      return v;
    }
  }
  c->bad = 1;
  return 0;
}
static inline uint8_t hkt_get_byte(hkt_cur *c) {
  if (hkt_unlikely(c->p >= c->end)) { c->bad = 1; return 0; }
  return *c->p++;
}
/* n bytes in place; NULL (and bad) if fewer remain. */
static inline const uint8_t *hkt_get_bytes(hkt_cur *c, uint64_t n) {
  if (hkt_unlikely((uint64_t)(c->end - c->p) < n)) { c->bad = 1; c->p = c->end; return NULL; }
  const uint8_t *s = c->p;
  c->p += n;
  return s;
}

/* ---- header encoding, shared by the writer and the spool ---- */
HKT_INTERNAL void hkt_header_encode(hkt_buf *b, const hkt_header *h);

/* ---- reader/writer internals for append and recovery ---- */
/* Offset just past the last whole header/event frame read, and the events
 * in the frames before it: where an append goes on. */
HKT_INTERNAL uint64_t hkt_reader_data_end(const hkt_reader *r);
HKT_INTERNAL uint64_t hkt_reader_data_events(const hkt_reader *r);
HKT_INTERNAL int hkt_writer_errno(const hkt_writer *w);
/* hkt_writer_put that returns 1 when the event completed a frame (written). */
HKT_INTERNAL int hkt_writer_put_framed(hkt_writer *w, const hkt_event *ev);

/* ---- zstd with hkt_mem ---- */
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
typedef struct ZSTD_DCtx_s ZSTD_DCtx;
HKT_INTERNAL ZSTD_CCtx *hkt_zstd_cctx(void);
HKT_INTERNAL ZSTD_DCtx *hkt_zstd_dctx(void);

#endif /* HKT_INTERNAL_H */
