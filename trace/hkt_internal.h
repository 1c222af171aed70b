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
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "hakmem/trace.h"
#include <emmintrin.h>   /* x86-64 only (as the recorder and reader): SSE2 lane counts */

#define HKT_INTERNAL __attribute__((visibility("hidden")))
#define hkt_likely(x)   __builtin_expect(!!(x), 1)
#define hkt_unlikely(x) __builtin_expect(!!(x), 0)

/* CLOCK_MONOTONIC in ns: the trace code's and the replay's waits and timeouts. */
static inline uint64_t hkt_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* HAKMEM_TRACE_ISA=base: the reader and the writer take their portable
 * paths even on a CPU with the instructions of their fast ones, so that
 * the tests run both (docs/environment.md). getenv only: no allocation. */
static inline int hkt_isa_base(void) {
  const char *isa = getenv("HAKMEM_TRACE_ISA");
  return isa && !strcmp(isa, "base");
}

/* ---- memory: anonymous mmap, page granular; never malloc ---- */
HKT_INTERNAL void *hkt_mem_alloc(size_t n);          /* zeroed; NULL on failure */
HKT_INTERNAL void  hkt_mem_free(void *p);
HKT_INTERNAL void *hkt_mem_realloc(void *p, size_t n);

/* ---- frames: the first 4 bytes of each frame's content ---- */
#define HKT_MAGIC_HEADER "HKTH"
#define HKT_MAGIC_EVENTS "HKTE"
#define HKT_MAGIC_END    "HKTZ"

/* The byte streams of an event frame, in file order: version 1 has the
 * first 10, version 2 all 13 (its stream 0 holds HEAD bytes, not bare
 * kinds; SIZE holds size >> 8, SIZE_LO the low bytes). Version 2 splits
 * sizes and FREE codes into a low byte and the rest because zstd's
 * Huffman stage codes a stream's bytes with one table: a low byte (near
 * uniform) and a high byte (small) mixed in one stream cost a bit or two
 * more than the two apart. */
enum {
  HKT_S_KIND, HKT_S_FLAGS, HKT_S_TID, HKT_S_TIME, HKT_S_CLS,
  HKT_S_PTR, HKT_S_SIZE, HKT_S_AUX, HKT_S_CALLER, HKT_S_STR,
  HKT_S_SIZE_LO, HKT_S_FREE_LO, HKT_S_FREE_HI,
  HKT_S__COUNT
};
#define HKT_S_V1_COUNT 10
#define HKT_S_HEAD HKT_S_KIND

/* Version 1 FLAGS byte: which optional fields an event carries (non-zero / present). */
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

/* ---- version 2 event coding (docs/trace-format.md, "Version 2 streams") ----
 * Each event costs one HEAD byte; every other field is written only when a
 * model that writer and reader keep alike (per frame) did not predict it. */

/* HEAD byte: the kind (31: it follows in FLAGS as a byte) and what differs
 * from the prediction. */
#define HKT_H_KIND   0x1f
#define HKT_H_KESC   31     /* kinds >= 31 */
#define HKT_H_TID    0x20   /* thread differs from the previous event's: TID varint */
#define HKT_H_FLAGS  0x40   /* flags differ from the last event of this kind: FLAGS varint */
#define HKT_H_CALLER 0x80   /* caller differs from this thread's last of this kind: CALLER varint */

/* Version 2 flags (a varint): fields present, as version 1's F and G, and
 * whether the class is written (it differs from its prediction). */
#define HKT_G_PTR    0x001
#define HKT_G_SIZE   0x002
#define HKT_G_AUX    0x004
#define HKT_G_AUX2   0x008
#define HKT_G_AUX3   0x010
#define HKT_G_FN     0x020
#define HKT_G_CALLER 0x040
#define HKT_G_STACK  0x080
#define HKT_G_STR    0x100
#define HKT_G_BID    0x200
#define HKT_G_CLS    0x400
#define HKT_G_ALL    0x7ff

/* The aux a version 2 event's aux is written against: a REMOTE_PUSH's
 * SuperSlab base is its block's 1 MiB boundary (or one below); any other
 * kind's the last aux of that kind in the frame. */
#define HKT_SS_ALIGN (1ull << 20)
static inline uint64_t hkt_aux_base(unsigned kind, uint64_t ptr, uint64_t last) {
  return kind == HKT_EV_REMOTE_PUSH ? ptr & ~(HKT_SS_ALIGN - 1) : last;
}

/* Per-thread predictions are kept for thread indexes modulo this. */
#define HKT_TSLOTS 32
static inline unsigned hkt_tslot(uint32_t tid) { return tid & (HKT_TSLOTS - 1); }

/* PTR codes (low 2 bits of the first varint u) of version 2. */
#define HKT_P_DELTA  0      /* u >> 2 = zigzag of the delta / 8 to a predicted pointer */
#define HKT_P_RING   1      /* allocation: the freed block u >> 2 below the top of its ring */
#define HKT_P_OTHER  2      /* u == 2: the pointer follows whole; u == 6: the stride entry */
#define HKT_P_XBACK  1      /* FREE: another thread slot's live allocation of rank u >> 2 (the slot follows in PTR) */
#define HKT_P_BACK   3      /* FREE: this thread's live allocation of rank u >> 2 (hkt_live) */
#define HKT_P_ABS    2u
#define HKT_P_STRIDE 6u

/* The freed blocks of each class slot, in the order they were freed: a
 * stack whose entries are numbered by position (0 = bottom). An allocation
 * that hands one out names it by its distance from the top (0: freed last,
 * a thread cache's LIFO) or as the entry `stride` past the one taken last
 * (blocks coming back in the order they were freed, as through a remote
 * queue). A taken entry is emptied; the stack shrinks past empty entries at
 * its top. Positions below lo were overwritten (the ring holds
 * HKT_RING_CAP). Writer and reader keep the same rings. */
#define HKT_RING_CAP 4096u   /* a power of two */
typedef struct hkt_rings {
  uint64_t *ent;             /* HKT_PTR_SLOTS x HKT_RING_CAP, 0 = empty */
  uint32_t top[HKT_PTR_SLOTS], lo[HKT_PTR_SLOTS];   /* entries lo..top-1 valid */
  uint32_t cursor[HKT_PTR_SLOTS];                   /* position taken last */
  int32_t stride[HKT_PTR_SLOTS];
} hkt_rings;
static inline uint64_t *hkt_ring_at(const hkt_rings *g, unsigned slot, uint32_t pos) {
  return &g->ent[(size_t)slot * HKT_RING_CAP + (pos & (HKT_RING_CAP - 1))];
}
static inline void hkt_rings_reset(hkt_rings *g) {
  memset(g->top, 0, sizeof g->top);
  memset(g->lo, 0, sizeof g->lo);
  memset(g->cursor, 0, sizeof g->cursor);
  memset(g->stride, 0, sizeof g->stride);
}
/* Push a freed block; returns its position. */
static inline uint32_t hkt_ring_push(hkt_rings *g, unsigned slot, uint64_t ptr) {
  uint32_t pos = g->top[slot]++;
  *hkt_ring_at(g, slot, pos) = ptr;
  if (g->top[slot] - g->lo[slot] > HKT_RING_CAP) g->lo[slot] = g->top[slot] - HKT_RING_CAP;
  return pos;
}
/* The block at pos, or 0 when pos holds none. */
static inline uint64_t hkt_ring_get(const hkt_rings *g, unsigned slot, uint32_t pos) {
  if (pos < g->lo[slot] || pos >= g->top[slot]) return 0;
  return *hkt_ring_at(g, slot, pos);
}
/* Take the block at pos (valid, non-empty) out. */
static inline void hkt_ring_take(hkt_rings *g, unsigned slot, uint32_t pos) {
  *hkt_ring_at(g, slot, pos) = 0;
  g->stride[slot] = (int32_t)(pos - g->cursor[slot]);
  g->cursor[slot] = pos;
  while (g->top[slot] > g->lo[slot] && !*hkt_ring_at(g, slot, g->top[slot] - 1)) g->top[slot]--;
}

/* The allocations of a version 2 frame still live, per thread slot, in
 * the order the thread made them: a FREE names its block by its rank among
 * the live allocations of the block's thread slot, counted from the latest
 * (0). A bit per allocation number says live. Above the bits, counts in
 * three levels: per 64-bit word, per group of 16 words and per block of
 * 256 words. The first two are prefix counts inside their group (block),
 * 16-bit lanes four to a uint64_t, so that select compares all 16 lanes at
 * once (SWAR, no branch per lane) and an update adds to the lanes from the
 * changed one on, again without a loop; blocks are counted plainly and
 * scanned from the latest (a frame has few). Memory follows use (grown by
 * doubling). The reader keeps these; the writer, which ranks but never
 * selects, keeps counts of its own that are cheaper to update and give the
 * very same ranks (writer.c, wlive_slot). */
/* Bits set in v, inline (the build targets CPUs without a popcnt
 * instruction, where the builtin is a library call). */
static inline uint32_t hkt_popcount(uint64_t v) {
  v -= (v >> 1) & 0x5555555555555555ull;
  v = (v & 0x3333333333333333ull) + ((v >> 2) & 0x3333333333333333ull);
  v = (v + (v >> 4)) & 0x0f0f0f0f0f0f0f0full;
  return (uint32_t)((v * 0x0101010101010101ull) >> 56);
}
#define HKT_LIVE_GRAIN 16384u   /* allocation numbers per block */
typedef struct hkt_live_slot {
  uint64_t *bits;           /* bit k: allocation number k is live */
  uint64_t *p1;             /* per word (lane): live in its group up to it */
  uint64_t *p2;             /* per group (lane): live in its block up to it */
  uint32_t *c3;             /* per block: live */
  uint64_t *val;            /* the owner's value of each allocation number */
  uint32_t *tag;            /* and a second one, if hkt_live.tags */
  uint32_t n, nlive, cap;   /* cap: a multiple of HKT_LIVE_GRAIN */
} hkt_live_slot;
typedef struct hkt_live { hkt_live_slot s[HKT_TSLOTS]; int tags; } hkt_live;
static inline void hkt_live_reset(hkt_live *l) {
  for (unsigned i = 0; i < HKT_TSLOTS; i++) {
    hkt_live_slot *s = &l->s[i];
    if (s->n) {
      uint32_t words = (s->n + 63) / 64, groups = (words + 15) / 16, blocks = (groups + 15) / 16;
      memset(s->bits, 0, (size_t)words * sizeof *s->bits);
      memset(s->p1, 0, (size_t)groups * 4 * sizeof *s->p1);   /* whole groups: lanes past n count too */
      memset(s->p2, 0, (size_t)blocks * 4 * sizeof *s->p2);
      memset(s->c3, 0, (size_t)blocks * sizeof *s->c3);
    }
    s->n = s->nlive = 0;
  }
}

/* The version 2 model that writer and reader keep alike within a frame
 * (docs/trace-format.md, "Version 2 streams"): one struct, one reset. */
typedef struct hkt_model {
  uint64_t npred[HKT_PTR_SLOTS];    /* last allocation not from a ring */
  hkt_rings rings;                  /* recently freed blocks per class */
  uint16_t fpred[64];               /* flags of the last event of each kind */
  uint64_t apred[64];               /* aux of the last event of each kind */
  uint32_t lcls[HKT_TSLOTS];        /* last class per thread */
  uint64_t tlast[HKT_TSLOTS];       /* last time per thread (set from the frame's t0 by each side) */
  uint32_t cpred[HKT_TSLOTS * 64];  /* last caller index per thread and kind */
  uint32_t prev_tid;
  hkt_live live;                    /* live allocations per thread slot (the reader's) */
} hkt_model;

static inline void hkt_model_reset(hkt_model *m) {
  memset(m->npred, 0, sizeof m->npred);
  hkt_rings_reset(&m->rings);
  hkt_live_reset(&m->live);
  memset(m->fpred, 0, sizeof m->fpred);
  memset(m->apred, 0, sizeof m->apred);
  for (unsigned i = 0; i < HKT_TSLOTS; i++) m->lcls[i] = HKT_NO_CLASS;
  memset(m->cpred, 0xff, sizeof m->cpred);
  m->prev_tid = 0;
}
static inline void hkt_live_release(hkt_live *l) {
  for (unsigned i = 0; i < HKT_TSLOTS; i++) {
    hkt_live_slot *s = &l->s[i];
    hkt_mem_free(s->bits);
    hkt_mem_free(s->p1);
    hkt_mem_free(s->p2);
    hkt_mem_free(s->c3);
    hkt_mem_free(s->val);
    hkt_mem_free(s->tag);
    *s = (hkt_live_slot){ 0 };
  }
}
/* Room for allocation number s->n, with a value per number if vals (the
 * writer never reads them) and a tag if tags; 0 or HKT_ERR_NOMEM. */
static inline int hkt_live_grow_ex(hkt_live_slot *s, int vals, int tags) {
  uint32_t cap = s->cap ? s->cap * 2 : HKT_LIVE_GRAIN;
  uint64_t *b = hkt_mem_realloc(s->bits, (size_t)cap / 64 * sizeof *b);
  if (b) s->bits = b;
  uint64_t *p1 = b ? hkt_mem_realloc(s->p1, (size_t)cap / 64 / 4 * sizeof *p1) : NULL;
  if (p1) s->p1 = p1;
  uint64_t *p2 = p1 ? hkt_mem_realloc(s->p2, (size_t)cap / 1024 / 4 * sizeof *p2) : NULL;
  if (p2) s->p2 = p2;
  uint32_t *c3 = p2 ? hkt_mem_realloc(s->c3, (size_t)cap / HKT_LIVE_GRAIN * sizeof *c3) : NULL;
  if (c3) s->c3 = c3;
  uint64_t *v = c3 && vals ? hkt_mem_realloc(s->val, (size_t)cap * sizeof *v) : NULL;
  if (v) s->val = v;
  uint32_t *t = c3 && (v || !vals) && tags ? hkt_mem_realloc(s->tag, (size_t)cap * sizeof *t) : NULL;
  if (t) s->tag = t;
  if (!c3 || (vals && !v) || (tags && !t)) return HKT_ERR_NOMEM;
  s->cap = cap;
  return 0;
}
static inline int hkt_live_grow(hkt_live_slot *s, int tags) { return hkt_live_grow_ex(s, 1, tags); }
/* Add d (1 or -1 as ~0) to lanes i.. of the 16 lanes at p (no lane goes
 * below 0 or past 0x7fff, so no lane carries into the next: adding per
 * 16-bit lane with SSE2, which every x86-64 has, gives the same words).
 * The 16 lanes from hkt_ones_from + 16 - i are 1 in lanes i.. . */
static const uint16_t hkt_ones_from[32] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                            1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
static inline void hkt_lanes_add(uint64_t *p, uint32_t i, uint64_t d) {
  __m128i m0 = _mm_loadu_si128((const __m128i *)(hkt_ones_from + 16 - i));
  __m128i m1 = _mm_loadu_si128((const __m128i *)(hkt_ones_from + 24 - i));
  __m128i a = _mm_loadu_si128((const __m128i *)p), b = _mm_loadu_si128((const __m128i *)p + 1);
  if (d == 1) { a = _mm_add_epi16(a, m0); b = _mm_add_epi16(b, m1); }
  else { a = _mm_sub_epi16(a, m0); b = _mm_sub_epi16(b, m1); }
  _mm_storeu_si128((__m128i *)p, a);
  _mm_storeu_si128((__m128i *)p + 1, b);
}
static inline uint32_t hkt_lane(const uint64_t *p, uint32_t i) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  uint16_t v;   /* lane i is the i-th 16-bit word in memory: one load */
  memcpy(&v, (const char *)p + 2 * i, 2);
  return v;
#else
  return (uint32_t)(p[i / 4] >> (16 * (i % 4))) & 0xffff;
#endif
}
/* The number of lanes of the 16 at p (prefix counts, non-decreasing, at
 * most 0x7fff) below want (1..0x7fff): the lane where the want-th live
 * entry is. */
static inline uint32_t hkt_lanes_below(const uint64_t *p, uint32_t want) {
  __m128i w = _mm_set1_epi16((short)want);
  __m128i a = _mm_loadu_si128((const __m128i *)p), b = _mm_loadu_si128((const __m128i *)p + 1);
  unsigned m = (unsigned)_mm_movemask_epi8(_mm_packs_epi16(_mm_cmplt_epi16(a, w), _mm_cmplt_epi16(b, w)));
  return (uint32_t)__builtin_ctz(~m);
}
static inline void hkt_live_count(hkt_live_slot *s, uint32_t k, uint64_t d) {
  uint32_t w = k / 64, g = w / 16;
  hkt_lanes_add(&s->p1[g * 4], w % 16, d);
  hkt_lanes_add(&s->p2[g / 16 * 4], g % 16, d);
  s->c3[g / 16] += (uint32_t)d;
  s->nlive += (uint32_t)d;
}
/* A new allocation of slot ts, with val (and tag, if l->tags): its number
 * there in *k; 0 or HKT_ERR_NOMEM. */
static inline int hkt_live_add(hkt_live *l, unsigned ts, uint64_t val, uint32_t *k) {
  hkt_live_slot *s = &l->s[ts];
  if (hkt_unlikely(s->n >= s->cap) && hkt_live_grow(s, l->tags)) return HKT_ERR_NOMEM;
  uint32_t i = s->n++;
  s->val[i] = val;
  s->bits[i / 64] |= 1ull << (i % 64);
  hkt_live_count(s, i, 1);
  *k = i;
  return 0;
}
static inline void hkt_live_slot_kill(hkt_live_slot *s, uint32_t k) {
  s->bits[k / 64] &= ~(1ull << (k % 64));
  hkt_live_count(s, k, ~0ull);
}
static inline void hkt_live_kill(hkt_live *l, unsigned ts, uint32_t k) {
  hkt_live_slot_kill(&l->s[ts], k);
}
/* Live allocations of slot ts numbered after k (k live or not). */
static inline uint32_t hkt_live_rank(const hkt_live *l, unsigned ts, uint32_t k) {
  const hkt_live_slot *s = &l->s[ts];
  uint32_t w = k / 64, g = w / 16, b = g / 16, last = (s->n - 1) / 64 / 256;
  uint32_t r = k % 64 == 63 ? 0 : hkt_popcount(s->bits[w] >> (k % 64) >> 1);
  r += hkt_lane(&s->p1[g * 4], 15) - hkt_lane(&s->p1[g * 4], w % 16);   /* the group's words after w */
  r += s->c3[b] - hkt_lane(&s->p2[b * 4], g % 16);                      /* the block's groups after g */
  for (uint32_t i = b + 1; i <= last; i++) r += s->c3[i];
  return r;
}
/* The bit of x (want of them set, 1 <= want <= 64) where the want-th set
 * bit is: the byte holding it by byte-wise prefix counts, then the bit in
 * that byte the same way (bits spread to bytes). */
static inline unsigned hkt_select64(uint64_t x, uint32_t want) {
  uint64_t c = x - ((x >> 1) & 0x5555555555555555ull);
  c = (c & 0x3333333333333333ull) + ((c >> 2) & 0x3333333333333333ull);
  c = ((c + (c >> 4)) & 0x0f0f0f0f0f0f0f0full) * 0x0101010101010101ull;   /* byte i: bits in bytes 0..i */
  uint64_t hi = 0x8080808080808080ull;
  unsigned byte = (unsigned)__builtin_ctzll(((c | hi) - want * 0x0101010101010101ull) & hi) / 8;
  want -= (uint32_t)(c << 8 >> (8 * byte)) & 0xff;
  uint64_t y = ((x >> (8 * byte)) & 0xff) * 0x0101010101010101ull & 0x8040201008040201ull;
  y = (((y + 0x7f7f7f7f7f7f7f7full) & hi) >> 7) * 0x0101010101010101ull;   /* byte i: bits 0..i of the byte */
  return byte * 8 + (unsigned)__builtin_ctzll(((y | hi) - want * 0x0101010101010101ull) & hi) / 8;
}
/* The word of s->bits holding the live allocation with `rank` live ones
 * after it, and in *want which of the word's set bits it is (1: the
 * lowest); UINT32_MAX if there is none. The word may still hold fewer
 * than *want bits on a corrupt trace: the caller checks. */
static inline __attribute__((always_inline)) uint32_t hkt_live_locate(const hkt_live_slot *s, uint32_t rank,
                                                                      uint32_t *want) {
  if (rank >= s->nlive) return UINT32_MAX;
  uint32_t b = (s->n - 1) / 64 / 256;   /* scan the blocks down from the latest */
  while (s->c3[b] <= rank) { rank -= s->c3[b]; if (!b--) return UINT32_MAX; }
  uint32_t w = s->c3[b] - rank;         /* the w-th live entry of block b, from its start */
  uint32_t gi = hkt_lanes_below(&s->p2[b * 4], w);
  if (gi > 15) return UINT32_MAX;
  if (gi) w -= hkt_lane(&s->p2[b * 4], gi - 1);
  uint32_t g = b * 16 + gi;
  uint32_t wi = hkt_lanes_below(&s->p1[g * 4], w);
  if (wi > 15) return UINT32_MAX;
  if (wi) w -= hkt_lane(&s->p1[g * 4], wi - 1);
  *want = w;
  return g * 16 + wi;
}
/* The number of the live allocation of slot ts with `rank` live ones after
 * it, or UINT32_MAX if there is none. */
static inline uint32_t hkt_live_find(const hkt_live *l, unsigned ts, uint32_t rank) {
  const hkt_live_slot *s = &l->s[ts];
  uint32_t want, w = hkt_live_locate(s, rank, &want);
  if (w == UINT32_MAX) return UINT32_MAX;
  uint64_t x = s->bits[w];
  if (hkt_unlikely(want == 0 || hkt_popcount(x) < want)) return UINT32_MAX;
  uint32_t k = w * 64 + hkt_select64(x, want);
  return k < s->n ? k : UINT32_MAX;
}

/* Limits every reader enforces, so that memory stays bounded on any input. */
#define HKT_MAX_FRAME_BYTES  (64u << 20)   /* decompressed content of one frame */
#define HKT_MAX_STR          4096u
#define HKT_MAX_MODULES      4096u
#define HKT_MAX_STACK_DEPTH  256u
#define HKT_MAX_STACK_FRAMES (8u << 20)    /* all stacks of a trace together */

/* Defaults of the writer. */
#define HKT_DEFAULT_FRAME_EVENTS (128u << 10)
#define HKT_DEFAULT_FRAME_BYTES  (8u << 20)
#define HKT_DEFAULT_LEVEL        1     /* as small as 3 on these streams, for less work (docs/trace-format.md §6) */
#define HKT_RECORD_LEVEL         HKT_DEFAULT_LEVEL   /* the in-process recorder's writer */


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
/* One module as the header's table has it (also the spool's: modules.c). */
HKT_INTERNAL void hkt_module_encode(hkt_buf *b, const hkt_module *m);

/* ---- reader/writer internals for append and recovery ---- */
/* Offset just past the last whole header/event frame read, and the events
 * in the frames before it: where an append goes on. */
HKT_INTERNAL uint64_t hkt_reader_data_end(const hkt_reader *r);
HKT_INTERNAL uint64_t hkt_reader_data_events(const hkt_reader *r);
/* The next frame decompressed by another thread (reader.c): _hkt_reader_async
 * before any event is read, then _hkt_reader_help from a thread with time to
 * spare (1: it decompressed one). */
HKT_INTERNAL int _hkt_reader_async(hkt_reader *r);
HKT_INTERNAL int _hkt_reader_help(hkt_reader *r);
HKT_INTERNAL int hkt_writer_errno(const hkt_writer *w);
/* hkt_writer_put that returns 1 when the event completed a frame (written). */
HKT_INTERNAL int hkt_writer_put_framed(hkt_writer *w, const hkt_event *ev);
/* The same for the event of a spool record without extension (spool.h),
 * read in place, at time_ns (w and r valid): the spool drain's put. */
struct hkt_rec;
HKT_INTERNAL int _hkt_writer_put_rec(hkt_writer *w, const struct hkt_rec *r, uint64_t time_ns);
/* Where the writer looks an event's pointer up (its pointer table of
 * 16-byte entries, writer.c), so that the drain can prefetch that line a
 * few records ahead without a call (hkt_writer_prefetch is the public
 * form). Valid while the writer is open; set_frame_events moves it. */
typedef struct hkt_ptab_view { const uint8_t *base; uint32_t mask; } hkt_ptab_view;
HKT_INTERNAL const hkt_ptab_view *_hkt_writer_ptab(const hkt_writer *w);
static inline uint32_t hkt_ptab_hash(uint64_t ptr, uint32_t mask) {
  return (uint32_t)((ptr * 0x9e3779b97f4a7c15ull) >> 32) & mask;
}
static inline void hkt_ptab_prefetch(const hkt_ptab_view *a, uint64_t ptr) {
  __builtin_prefetch(a->base + (size_t)hkt_ptab_hash(ptr, a->mask) * 16, 1, 3);   /* for writing: the event stores its entry there */
}

/* ---- zstd with hkt_mem ---- */
typedef struct ZSTD_CCtx_s ZSTD_CCtx;
typedef struct ZSTD_DCtx_s ZSTD_DCtx;
HKT_INTERNAL ZSTD_CCtx *hkt_zstd_cctx(void);
HKT_INTERNAL ZSTD_DCtx *hkt_zstd_dctx(void);

#endif /* HKT_INTERNAL_H */
