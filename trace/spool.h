/* spool.h — the recorder's shared-memory spool (FILE.spool).
 *
 * Recorded threads append fixed-size raw records to chunks of a MAP_SHARED
 * file; the recorder's writer thread merges them into seq order and writes
 * the trace, then frees the chunks. The file outlives the process, so when
 * the process dies (SIGKILL, or a crash the handler could not finish) the
 * events whose calls returned are still in it: `hakmem record` or
 * `hakmem recover` finish the trace from it (drain.c). docs/trace-format.md
 * describes the layout for other readers.
 *
 *   page 0            hkt_spool_hdr
 *   pages 1-2         command line (NUL-terminated)
 *   pages 3-4         configuration text
 *   chunk directory   nchunks x hkt_chunk_hdr (64 bytes each)
 *   stack table       (only with backtraces) entries, then frames
 *   module table      the modules at start, for a header `recover` writes
 *   chunks            nchunks x chunk_bytes of 64-byte records
 */
#ifndef HKT_SPOOL_H
#define HKT_SPOOL_H

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include "hkt_internal.h"

#define HKT_SPOOL_MAGIC   "HKSPOOL1"
#define HKT_SPOOL_VERSION 3
#define HKT_SPOOL_PAGE    4096u
#define HKT_SPOOL_CMDLINE_OFF (1 * HKT_SPOOL_PAGE)
#define HKT_SPOOL_CMDLINE_MAX (2 * HKT_SPOOL_PAGE)
#define HKT_SPOOL_CONFIG_OFF  (3 * HKT_SPOOL_PAGE)
#define HKT_SPOOL_CONFIG_MAX  (2 * HKT_SPOOL_PAGE)
#define HKT_SPOOL_DIR_OFF     (5 * HKT_SPOOL_PAGE)
#define HKT_SPOOL_MODS_MAX    (256u << 10)   /* the module table's bytes */
#define HKT_CHUNK_BYTES   (64u << 10)
#define HKT_REC_BYTES     64u
#define HKT_CHUNK_RECS    (HKT_CHUNK_BYTES / HKT_REC_BYTES)

enum { HKT_CHUNK_FREE = 0, HKT_CHUNK_OWNED = 1, HKT_CHUNK_SEALED = 2 };
enum { HKT_SPOOL_RUNNING = 0, HKT_SPOOL_FINISHING = 1, HKT_SPOOL_DONE = 2 };

typedef struct hkt_spool_hdr {
  char magic[8];
  uint32_t version, chunk_bytes;
  uint32_t nchunks, stack_cap;        /* stack table entries (0: no backtraces) */
  uint64_t file_bytes;
  uint64_t chunks_off, stacks_off, sframes_off, sframes_cap;
  uint32_t pid, ppid;
  uint64_t start_realtime_ns, start_mono_ns;
  uint64_t tsc0;                      /* raw timestamp at start */
  _Atomic uint64_t tsc_mult;          /* ns = (raw - tsc0) * mult >> 32; 0 until calibrated */
  uint32_t clock_tsc;                 /* 1: raw stamps are TSC, else CLOCK_MONOTONIC ns */
  uint32_t time_shift;
  uint64_t arena_base;
  uint32_t num_classes, backtrace;
  uint32_t class_size[64];
  char trace_path[1024];
  uint64_t fork_seq1;                 /* a forked child: the parent's FORK seq + 1; 0 otherwise */
  char parent_trace[1024];            /* ... and the parent's trace */
  uint64_t mods_off;                  /* the module table (HKT_SPOOL_MODS_MAX bytes) */
  _Atomic uint32_t mods_len;          /* its bytes written (0: none yet; stored last) */
  /* live state; the counter every recorded thread bumps has its own line */
  _Alignas(64) _Atomic uint64_t next_seq;   /* the global sequence counter */
  _Alignas(64) _Atomic uint64_t written_seq;       /* spool seqs below this are in whole frames of the trace */
  _Atomic uint64_t written_events;    /* ... and that many events the trace holds */
  _Atomic uint64_t drained_seq;       /* the writer's progress (spool seqs merged) */
  _Atomic uint64_t end_seq;           /* seq taken by the end (UINT64_MAX: none yet) */
  _Atomic uint32_t end_kind, end_status, end_tid;
  _Atomic uint32_t state;             /* HKT_SPOOL_RUNNING/FINISHING/DONE */
  _Atomic uint32_t wake;              /* futex word the writer thread sleeps on */
  _Atomic uint32_t stack_lock, nstacks;
  _Atomic uint64_t nsframes;
  _Atomic uint64_t dropped;           /* events that could not be spooled */
} hkt_spool_hdr;

typedef struct hkt_chunk_hdr {
  _Atomic uint32_t state;
  uint32_t os_tid;                    /* owner thread, to find chunks of dead threads */
  _Atomic uint64_t claim_seq;         /* next_seq when claimed; UINT64_MAX while free */
  uint64_t pad[6];
} hkt_chunk_hdr;

/* A raw record. Extension records (nx of them) follow when the event has
 * aux3, a stack, a thread index >= 0xffff, a string or a build-id.
 * seq1 = seq + 1 is stored last (release): a record is there when seq1 >
 * its chunk's claim_seq; anything else is left from an earlier use of the
 * chunk, or zero, or a record whose thread died writing it. */
typedef struct hkt_rec {
  uint64_t seq1, stamp;
  uint64_t ptr, size, aux, aux2, caller;
  uint8_t kind, nx;
  uint16_t fn, cls, tid;              /* tid 0xffff: see the extension */
} hkt_rec;

typedef struct hkt_rec_ext {
  uint64_t aux3;
  uint32_t stack_id, tid;
  uint16_t str_len;                   /* 0xffff: no string */
  uint8_t bid_len, flags;
  uint8_t data[44];                   /* string then build-id; more in the next records */
} hkt_rec_ext;

/* Stack table (backtraces): entries by id (id = index + 1), a hash index
 * of stack_cap * 2 slots holding ids, then the frames. Insertions take
 * stack_lock; readers see entries below nstacks (release/acquire). */
typedef struct hkt_stack_ent {
  uint64_t hash;
  uint64_t off;                       /* into the frames array */
  uint32_t n, pad;
} hkt_stack_ent;

/* The extension records ev needs (0 for most events): for aux3, a stack, a
 * thread index >= 0xffff, a string or a build-id. *sl and *bl: the bytes
 * of the string and of the build-id that are kept. */
static inline unsigned hkt_rec_exts(const hkt_event *ev, size_t *sl, size_t *bl) {
  *sl = *bl = 0;
  if (hkt_likely(!(ev->aux3 | ev->stack_id | (ev->tid >= 0xffff) | (ev->str != NULL) | (ev->bid != NULL))))
    return 0;
  *sl = ev->str ? strnlen(ev->str, HKT_MAX_STR) : 0;
  *bl = ev->bid ? (ev->bid_len > 40 ? 40 : ev->bid_len) : 0;
  size_t data = *sl + *bl;
  return 1 + (unsigned)(data > 44 ? (data - 44 + HKT_REC_BYTES - 1) / HKT_REC_BYTES : 0);
}

/* Every field of the record group at r (1 + nx records, hkt_rec_exts)
 * from ev, but seq1 and stamp: the caller stores those, seq1 last. */
static inline void hkt_rec_fill(hkt_rec *r, const hkt_event *ev, unsigned nx, size_t sl, size_t bl) {
  r->ptr = ev->ptr;
  r->size = ev->size;
  r->aux = ev->aux;
  r->aux2 = ev->aux2;
  r->caller = ev->caller;
  r->kind = (uint8_t)ev->kind;
  r->nx = (uint8_t)nx;
  r->fn = ev->fn;
  r->cls = ev->cls > 0xffff ? 0xffff : (uint16_t)ev->cls;
  r->tid = ev->tid >= 0xffff ? 0xffff : (uint16_t)ev->tid;
  if (hkt_likely(!nx)) return;
  hkt_rec_ext *x = (hkt_rec_ext *)(r + 1);
  x->aux3 = ev->aux3;
  x->stack_id = ev->stack_id;
  x->tid = ev->tid;
  x->str_len = ev->str ? (uint16_t)sl : 0xffff;
  x->bid_len = (uint8_t)bl;
  x->flags = 0;
  uint8_t *d = x->data;   /* runs on into the following records */
  if (sl) memcpy(d, ev->str, sl);
  if (bl) memcpy(d + sl, ev->bid, bl);
}

_Static_assert(sizeof(hkt_rec) == HKT_REC_BYTES, "record size");
_Static_assert(sizeof(hkt_rec_ext) == HKT_REC_BYTES, "extension size");
_Static_assert(sizeof(hkt_chunk_hdr) == 64, "chunk header size");
_Static_assert(sizeof(hkt_spool_hdr) <= HKT_SPOOL_PAGE, "spool header size");

typedef struct hkt_spool {
  hkt_spool_hdr *h;
  uint8_t *base;
  uint64_t len;
  hkt_chunk_hdr *dir;
  hkt_stack_ent *stacks;
  uint32_t *stack_idx;
  uint64_t *sframes;
} hkt_spool;

static inline hkt_rec *hkt_spool_chunk(const hkt_spool *s, uint32_t i) {
  return (hkt_rec *)(s->base + s->h->chunks_off + (uint64_t)i * s->h->chunk_bytes);
}

/* Create and map a new spool (raw syscalls only: runs inside the first
 * malloc). 0 or a negative errno. */
HKT_INTERNAL int hkt_spool_create(hkt_spool *s, const char *path, uint64_t bytes, uint32_t stack_cap);
/* Map an existing spool for recovery; checks magic and sizes. */
HKT_INTERNAL int hkt_spool_map(hkt_spool *s, const char *path, char *why, size_t why_len);
HKT_INTERNAL void hkt_spool_unmap(hkt_spool *s);

/* ---- drain: spool -> trace, shared by the writer thread and recovery ---- */
typedef struct hkt_drain hkt_drain;
HKT_INTERNAL hkt_drain *hkt_drain_new(hkt_spool *s, hkt_writer *w, uint64_t from_seq);
/* Move every event available in seq order into the writer. final: the
 * process is gone or finishing, so missing seqs (calls that never
 * returned) are skipped after `gap_wait_ms`. Returns events moved, or an
 * hkt_err. */
HKT_INTERNAL int64_t hkt_drain_step(hkt_drain *d, int final, unsigned gap_wait_ms);
HKT_INTERNAL uint64_t hkt_drain_next_seq(const hkt_drain *d);
HKT_INTERNAL void hkt_drain_free(hkt_drain *d);
/* Emit END (from the spool's end fields or the given ones) and close. */
HKT_INTERNAL int hkt_drain_finish(hkt_drain *d, uint32_t end_kind, uint32_t end_status);

/* The trace header a spool describes (modules: none, see
 * hkt_modules_from_spool; strings point into the spool). */
HKT_INTERNAL void hkt_spool_header(const hkt_spool *s, hkt_header *h);
HKT_INTERNAL uint64_t hkt_tsc_calibrate(uint64_t tsc0, uint64_t mono0);

/* Finish the trace of a dead recorder from its spool: appends to `out`
 * (the spool's own trace when NULL, else a copy of it), then removes the
 * spool. end_kind/status used unless the spool recorded its own end. */
typedef struct hkt_recover_info {
  uint64_t events_before, events_added;
  uint32_t end_kind, end_status;
  char trace_path[1024];
} hkt_recover_info;
HKT_INTERNAL int hkt_recover(const char *spool_path, const char *out, uint32_t end_kind,
                             uint32_t end_status, hkt_recover_info *info, char *why, size_t why_len);

#endif /* HKT_SPOOL_H */
