/* hakmem/trace.h — the hakmem trace: its event model, and the streaming
 * reader and writer every tool goes through.
 *
 * A trace (.hkt.zst) is a sequence of zstd frames; docs/trace-format.md
 * specifies every byte. This header is the decoded view: a header, then
 * events in global sequence order. Memory use of a reader is bounded (one
 * frame, the callsite and stack tables), never proportional to the trace.
 *
 * Errors: every function that can fail returns an int; a negative value is
 * an hkt_err code (check with HKT_IS_ERR, describe with hkt_strerror; the
 * reader also keeps a one-line message with file, offset or seq).
 */
#ifndef HAKMEM_TRACE_H
#define HAKMEM_TRACE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef HAK_API
#define HAK_API __attribute__((visibility("default")))
#endif

#define HKT_FORMAT_VERSION 2       /* what the writer writes; the reader reads 1 and 2 */
#define HKT_NO_CLASS 0xffffu

/* ---- events ------------------------------------------------------------ */

/* The kind of an event and what its generic fields hold. Call events
 * (MALLOC..FREE) carry the caller's address in `caller`. Allocation calls
 * are emitted when they return (ptr = result, 0 on failure, `aux2` = errno);
 * FREE is emitted on entry, so a free that crashes is in the trace. The
 * internal events a call causes (REFILL, SS_REGISTER, ...) therefore come
 * before an allocation's event and after a free's. */
enum hkt_kind {
  HKT_EV_NONE = 0,
  HKT_EV_MALLOC = 1,        /* ptr, size, cls */
  HKT_EV_CALLOC = 2,        /* ptr, size = element size, aux = count, cls */
  HKT_EV_REALLOC = 3,       /* ptr = result, aux = old ptr, size (reallocarray: count x size), cls; fn: REALLOC or REALLOCARRAY */
  HKT_EV_ALIGNED = 4,       /* ptr, size, aux = alignment, cls; fn says which entry point */
  HKT_EV_FREE = 5,          /* ptr, cls (of the block, HKT_NO_CLASS if unknown) */
  HKT_EV_THREAD_START = 6,  /* aux = OS thread id */
  HKT_EV_THREAD_EXIT = 7,   /* emitted before the exiting thread's caches are flushed */
  HKT_EV_SS_REGISTER = 8,   /* ptr = SuperSlab base, size = its bytes, cls, aux = owner thread index, aux2 = SuperSlab id */
  HKT_EV_SS_UNREGISTER = 9, /* same fields; aux3 = blocks still live (0 unless the invariant broke) */
  HKT_EV_REMOTE_PUSH = 10,  /* ptr = block, aux = SuperSlab base, aux2 = owner thread index, cls */
  HKT_EV_REMOTE_DRAIN = 11, /* aux = SuperSlab base, size = blocks drained (0: an exiting owner found it empty), cls */
  HKT_EV_CACHE_REFILL = 12, /* size = blocks moved into the thread cache, cls, aux = SuperSlab base, aux2 = of them drained from its remote queue; size may be 0 (an attempt, recorded for ordering) */
  HKT_EV_CACHE_FLUSH = 13,  /* size = blocks moved out, cls */
  HKT_EV_SS_ADOPT = 14,     /* ptr = SuperSlab base, cls, aux2 = id; fn = 0 from the shared pool (abandoned), 1 from the empty cache */
  HKT_EV_SS_ABANDON = 15,   /* ptr = SuperSlab base, cls; the owner exited with blocks still live */
  HKT_EV_LARGE_MAP = 16,    /* ptr, size = bytes the large block now spans (also after an in-place realloc, or an attempt that failed: size unchanged) */
  HKT_EV_LARGE_UNMAP = 17,  /* ptr, size */
  HKT_EV_MODULE_LOAD = 18,  /* ptr = base, size, str = path, bid/bid_len = build-id */
  HKT_EV_MARK = 19,         /* str = label */
  HKT_EV_DETECTION = 20,    /* fn = enum hkt_detect, ptr, aux = SuperSlab base or 0, aux2 = extra (size, offset) */
  HKT_EV_END = 21,          /* fn = enum hkt_end; aux = exit status or signal number */
  HKT_EV_SS_EMPTY = 22,     /* ptr = SuperSlab base, cls, aux2 = id: the owner parked it, empty, in the cache (owner none) */
  HKT_EV_FORK = 23,         /* the thread calls fork(): the child's trace starts from the heap as it is here (hkt_header.fork_seq) */
  HKT_EV__COUNT
};

/* Which entry point an ALIGNED or REALLOC event came from. */
enum hkt_fn {
  HKT_FN_NONE = 0,
  HKT_FN_POSIX_MEMALIGN, HKT_FN_ALIGNED_ALLOC, HKT_FN_MEMALIGN,
  HKT_FN_VALLOC, HKT_FN_PVALLOC,
  HKT_FN_REALLOC, HKT_FN_REALLOCARRAY,
};

enum hkt_detect {
  HKT_DET_INVALID_FREE = 1, /* not a block hakmem handed out */
  HKT_DET_INTERIOR_FREE,    /* inside a block, not at its start */
  HKT_DET_DOUBLE_FREE,
  HKT_DET_STALE_FREE,       /* into a SuperSlab no longer registered */
  HKT_DET_CANARY,           /* write past the requested size */
  HKT_DET_POISON,           /* write after free, found at reuse */
  HKT_DET_FREELIST,         /* corrupt freelist link */
  HKT_DET_SS_INVARIANT,     /* SuperSlab released with live blocks */
  HKT_DET__COUNT
};

enum hkt_end {
  HKT_END_UNKNOWN = 0,      /* the trace stops without saying (cut, recovered) */
  HKT_END_EXIT = 1,         /* aux = exit status */
  HKT_END_SIGNAL = 2,       /* aux = signal number */
  HKT_END_EXEC = 3,         /* the process exec'd another image (which writes its own trace) */
};
HAK_API const char *hkt_end_name(unsigned end);       /* "unknown", "exit", "signal", "exec" */

/* Thread index of events no program thread made (MODULE_LOAD found by the
 * recorder's own thread: it looks every 2 ms at most, and once more at
 * exit, so a MODULE_LOAD follows its dlopen by up to that much). */
#define HKT_TID_RECORDER 0xffffffffu

typedef struct hkt_event {
  uint64_t seq;             /* global order across threads, from 0, no gaps */
  uint64_t time_ns;         /* since the header's start time */
  uint32_t tid;             /* thread index: 0 = first thread seen */
  uint16_t kind;            /* enum hkt_kind */
  uint16_t fn;              /* enum hkt_fn / hkt_detect / hkt_end */
  uint32_t cls;             /* size class, HKT_NO_CLASS when none */
  uint32_t stack_id;        /* 0 = no stack; else see hkt_reader_stack */
  uint64_t ptr, size, aux, aux2, aux3;
  uint64_t caller;          /* return address into the caller, 0 if none */
  const char *str;          /* MODULE_LOAD path, MARK label; valid until the next call */
  const uint8_t *bid;       /* MODULE_LOAD build-id bytes (bid_len of them) */
  uint32_t bid_len;
} hkt_event;

HAK_API const char *hkt_kind_name(unsigned kind);     /* "malloc", "ss_register", ... */
HAK_API int         hkt_kind_from_name(const char *); /* -1 if unknown */
HAK_API const char *hkt_detect_name(unsigned det);    /* "double_free", ... */
HAK_API const char *hkt_fn_name(unsigned fn);

/* ---- header ------------------------------------------------------------ */

typedef struct hkt_module {
  const char *path;
  uint64_t base, size;
  uint8_t build_id[40];
  uint32_t build_id_len;
} hkt_module;

typedef struct hkt_header {
  uint32_t version;         /* HKT_FORMAT_VERSION */
  uint32_t pid, ppid;
  uint64_t start_realtime_ns;   /* CLOCK_REALTIME at start */
  const char *clock;        /* how time_ns was measured, e.g. "tsc" or "monotonic" */
  const char *cmdline;      /* arguments joined by spaces */
  const char *config;       /* the HAKMEM_* settings in force, "NAME=VALUE\n"... */
  uint64_t arena_base;      /* the allocator's arena, fixed while recording */
  uint32_t num_classes;
  uint32_t class_size[64];  /* block size of each class */
  uint32_t num_modules;
  const hkt_module *modules;
  uint32_t time_shift;      /* time_ns was stored in units of 2^time_shift ns (0: exact) */
  uint64_t tsc_per_sec;     /* clock "tsc": the measured TSC rate, else 0 */
  /* A forked child's trace starts in a process that already has a heap: its
   * parent's, as it was at the parent's FORK event. forked: 1 for such a
   * trace (0 also for traces written before these fields existed). */
  uint32_t forked;
  uint64_t fork_seq;        /* forked: the seq of that FORK event in the parent's trace */
  const char *parent_trace; /* forked: the parent's trace as the recorder named it ("" unknown) */
} hkt_header;

/* ---- errors ------------------------------------------------------------ */

enum hkt_err {
  HKT_OK = 0,
  HKT_ERR_IO = -1,          /* open/read/write failed (errno kept) */
  HKT_ERR_NOT_TRACE = -2,   /* not a zstd file, or no hakmem header */
  HKT_ERR_VERSION = -3,     /* a format version this build does not read */
  HKT_ERR_TRUNCATED = -4,   /* ends inside a frame */
  HKT_ERR_CORRUPT = -5,     /* checksum or decoding error */
  HKT_ERR_SEQUENCE = -6,    /* sequence numbers out of order or missing */
  HKT_ERR_NOMEM = -7,
  HKT_ERR_ARG = -8,
  HKT_ERR_ZSTD = -9,
};
#define HKT_IS_ERR(x) ((x) < 0)
/* Forward an error to the caller: HKT_TRY(hkt_writer_put(w, &ev)); */
#define HKT_TRY(expr) do { int hkt_e_ = (expr); if (HKT_IS_ERR(hkt_e_)) return hkt_e_; } while (0)
HAK_API const char *hkt_strerror(int err);

/* ---- reader ------------------------------------------------------------ */

typedef struct hkt_reader hkt_reader;

/* On failure *out may still be set to a reader that only answers errmsg and
 * close (call close); hkt_reader_errmsg(NULL) gives the message of this
 * thread's last failed open. */
HAK_API int  hkt_reader_open(hkt_reader **out, const char *path);
HAK_API const hkt_header *hkt_reader_header(const hkt_reader *r);
/* 1: *ev filled; 0: end of trace; <0: error (events before it were good). */
HAK_API int  hkt_reader_next(hkt_reader *r, hkt_event *ev);
/* One line: "FILE: offset N (after seq S): what is wrong". */
HAK_API const char *hkt_reader_errmsg(const hkt_reader *r);
HAK_API uint64_t hkt_reader_offset(const hkt_reader *r);  /* compressed bytes of the whole frames read so far */
HAK_API uint64_t hkt_reader_frames(const hkt_reader *r);  /* whole frames read so far (the header frame included) */
HAK_API int  hkt_reader_complete(const hkt_reader *r);    /* after 0 from next: saw the end frame */
HAK_API int  hkt_reader_stack(const hkt_reader *r, uint32_t id, const uint64_t **frames, uint32_t *n);
HAK_API void hkt_reader_close(hkt_reader *r);

/* Batch reading: the next events by pointer, up to HKT_BATCH at a time,
 * with no per-event call or copy. n > 0: evs[0..n) are valid until the
 * next call on r; 0: end of trace; < 0: an hkt_err, after every good
 * event (as hkt_reader_next, with which it mixes freely). A batch ends
 * after an event that has a string, so str/bid stay valid as above. */
#define HKT_BATCH 256u
HAK_API int  hkt_reader_batch(hkt_reader *r, const hkt_event **evs);
/* The same, decoded straight into the caller's array: n > 0 events in
 * out[0..n) (n <= max, at most HKT_BATCH), 0 at the end, < 0 an hkt_err
 * after every good event. No array of the reader's is written and read
 * again on the way, and a small array stays in L1 beside the consumer's
 * own work (the replay reader: 64 events). str/bid point into the reader
 * as above. Mixes freely with hkt_reader_next and hkt_reader_batch. */
HAK_API int  hkt_reader_batch_into(hkt_reader *r, hkt_event *out, unsigned max);
/* Fields the consumer never reads, so that the decoder need not compute
 * or store them; before the first event (else HKT_ERR_ARG). The fields
 * named are unspecified in the events read from then on (the decoder
 * skips them when both are named); every stream is still consumed
 * exactly, and the other fields are as ever. */
#define HKT_SKIP_TIME   0x1u   /* time_ns */
#define HKT_SKIP_CALLER 0x2u   /* caller */
HAK_API int  hkt_reader_skip(hkt_reader *r, unsigned fields);

/* ---- writer ------------------------------------------------------------ */

typedef struct hkt_writer hkt_writer;

/* Events must be put in seq order. The writer encodes, cuts a frame every
 * frame_events events (0: default), and syncs nothing: close finishes it. */
HAK_API int  hkt_writer_open(hkt_writer **out, const char *path, const hkt_header *h);
HAK_API int  hkt_writer_put(hkt_writer *w, const hkt_event *ev);
HAK_API int  hkt_writer_stack(hkt_writer *w, uint32_t id, const uint64_t *frames, uint32_t n);
HAK_API int  hkt_writer_flush(hkt_writer *w);     /* end the current frame now */
/* Writes the end frame (complete = 1) and closes. */
HAK_API int  hkt_writer_close(hkt_writer *w, int complete);
HAK_API uint64_t hkt_writer_bytes(const hkt_writer *w);
/* The writer numbers events itself (ev->seq is ignored): seq = events put
 * before, from 0. Options, before the first put: */
HAK_API int  hkt_writer_set_frame_events(hkt_writer *w, uint32_t n);
HAK_API int  hkt_writer_set_level(hkt_writer *w, int zstd_level);
/* Write to an open fd (owned by the writer from then on). */
HAK_API int  hkt_writer_fdopen(hkt_writer **out, int fd, const char *path, const hkt_header *h);
/* Go on writing an existing trace: keeps its header and whole event frames,
 * cuts a partial last frame (and an end frame), and continues at *next_seq
 * (set on return). Fails on a file without a readable header frame. */
HAK_API int  hkt_writer_append(hkt_writer **out, const char *path, uint64_t *next_seq);
HAK_API uint64_t hkt_writer_events(const hkt_writer *w);  /* events put so far (= next seq) */
/* A hint, no effect on what is written: an event naming ptr comes soon.
 * Encoding an event looks ptr up in a table too big for the cache; naming
 * the pointers a few events ahead (e.g. evs[i + 8].ptr before putting
 * evs[i]) lets that line arrive while the writer works on the ones before. */
HAK_API void hkt_writer_prefetch(hkt_writer *w, uint64_t ptr);

#ifdef __cplusplus
}
#endif
#endif /* HAKMEM_TRACE_H */
