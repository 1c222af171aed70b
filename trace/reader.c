/* reader.c — stream a trace: one frame in memory at a time.
 *
 * Frames are decompressed with zstd's streaming API into one growing
 * buffer (capped at HKT_MAX_FRAME_BYTES), straight into it when the frame
 * says its size (stable_room); an event frame is then decoded a chunk at a
 * time (HKT_BATCH events) into an array that hkt_reader_next copies from
 * and hkt_reader_batch hands out, or into the caller's own
 * (hkt_reader_batch_into): one tight loop with its cursors in registers
 * instead of a call per event. Version 2 frames go through fast paths
 * for the common events (MALLOC, FREE and REMOTE_PUSH as predicted) and a
 * general path for everything else, which both keep the writer's model
 * exactly (see decode_fast_v2).
 * Memory is that buffer plus the callsite and stack tables, whatever the
 * length of the trace. Errors are sticky: once next returns one, it keeps
 * returning it, and errmsg names the file, the offset of the frame and the
 * last good sequence number. */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY   /* ZSTD_d_stableOutBuffer */
#include "zstd_api.h"
#include <immintrin.h>
#include "hkt_internal.h"

#define IN_CAP (128u << 10)
#define CLS_LUT_MAX 4096u   /* sizes up to this predict their class by table */

typedef struct stack_ent { uint32_t id, n; uint64_t off; } stack_ent;

struct hkt_reader {
  int fd;
  int err;
  int eof;
  int complete;
  int in_frame;             /* an event frame is being decoded */
  char *path;
  char msg[640];
  ZSTD_DCtx *dctx;
  uint8_t *in;
  size_t in_len, in_pos;
  uint64_t consumed;        /* compressed bytes the decoder took */
  uint64_t whole_off;       /* end of the last whole frame */
  uint64_t frame_off;       /* start of the frame being read */
  uint64_t data_end, data_events;
  uint64_t frames;
  hkt_buf content;
  struct hkt_job *job;      /* the next frame, decompressed by another thread (_hkt_reader_async) */

  /* header, with its strings and modules in `hstore` */
  hkt_header hdr;
  hkt_buf hstore;
  hkt_module *mods;

  /* the event frame being decoded */
  uint64_t next_seq;
  uint32_t left;            /* events of the frame not yet returned */
  uint64_t prev_t;
  uint64_t pred[HKT_PTR_SLOTS];
  hkt_freed freed;          /* version 1 */
  hkt_model m;              /* version 2 predictions (as the writer's) */
  hkt_cur s[HKT_S__COUNT];
  uint64_t *callers;
  uint32_t ncallers, callers_cap;
  uint64_t *aptr;           /* version 1: allocations of this frame (FREE back-references) */
  uint32_t *acls;
  uint32_t nalloc, alloc_cap;
  char str[HKT_MAX_STR + 1];
  uint8_t bid[256];
  hkt_event *batch;         /* decoded events: batch[bpos..bn) not yet handed out */
  uint32_t bpos, bn;
  uint8_t cls_lut[CLS_LUT_MAX + 1];   /* predicted class by size (0xff: none) */
  int fast_isa;             /* the CPU has HKT_FAST_ISA */
  unsigned skip;            /* HKT_SKIP_*: fields the consumer never reads */

  /* stacks of the whole trace */
  stack_ent *stab;          /* open addressing by id */
  uint32_t stab_cap, nstacks;
  uint64_t *sframes;
  uint64_t nsframes, sframes_cap;
};

static __thread char last_open_msg[640];

static int set_err(hkt_reader *r, int err, uint64_t off, const char *fmt, ...) {
  char what[400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  if (r->next_seq)
    snprintf(r->msg, sizeof r->msg, "%s: offset %llu (after seq %llu): %s", r->path,
             (unsigned long long)off, (unsigned long long)(r->next_seq - 1), what);
  else
    snprintf(r->msg, sizeof r->msg, "%s: offset %llu (before the first event): %s", r->path,
             (unsigned long long)off, what);
  r->err = err;
  return err;
}

/* Room for one frame decoded straight into r->content, when the frame's
 * header (whole in the input) gives its content size: zstd then writes
 * into the buffer itself (stable output: no window of its own, no copy
 * out of it), which must stay the same buffer, size and position on every
 * call of the frame. A frame that fails so (one that lies about its
 * size, a corrupt one) is read again the general way, from its start, so
 * that it fails exactly as it always did. The buffer size, or 0: decode
 * the frame the general way (unknown size, a skippable frame, a header not
 * yet whole, too large). */
#define STABLE_SLACK (256u << 10)
static size_t stable_room(hkt_reader *r) {
  static const uint8_t zstd_magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
  if (r->in_len - r->in_pos < 4 || memcmp(r->in + r->in_pos, zstd_magic, 4)) return 0;
  unsigned long long cs = ZSTD_getFrameContentSize(r->in + r->in_pos, r->in_len - r->in_pos);
  if (cs == 0 || cs > HKT_MAX_FRAME_BYTES - STABLE_SLACK) return 0;   /* also UNKNOWN and ERROR */
  size_t want = (size_t)cs + STABLE_SLACK;
  if (r->content.cap < want && hkt_buf_reserve(&r->content, want)) return 0;
  if (ZSTD_isError(ZSTD_DCtx_setParameter(r->dctx, ZSTD_d_stableOutBuffer, 1))) return 0;
  return r->content.cap < HKT_MAX_FRAME_BYTES ? r->content.cap : HKT_MAX_FRAME_BYTES;
}

/* Decompress the next frame into r->content. 1: a frame; 0: clean end of
 * file; <0: error. */
static int read_frame_here(hkt_reader *r) {
  r->content.len = 0;
  r->frame_off = r->whole_off;
  int started = 0, general = 0;
  size_t stable = 0;   /* the stable output's size, 0: the general way */
  ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
  ZSTD_DCtx_setParameter(r->dctx, ZSTD_d_stableOutBuffer, 0);
  for (;;) {
    if (r->in_pos == r->in_len) {
      if (r->eof) {
        if (!started) return 0;
        return set_err(r, HKT_ERR_TRUNCATED, r->frame_off, "the file ends inside a frame (%llu bytes of it present)",
                       (unsigned long long)(r->consumed - r->frame_off));
      }
      ssize_t n = read(r->fd, r->in, IN_CAP);
      if (n < 0) {
        if (errno == EINTR) continue;
        return set_err(r, HKT_ERR_IO, r->consumed, "read failed: %s", strerror(errno));
      }
      if (n == 0) { r->eof = 1; continue; }
      r->in_len = (size_t)n;
      r->in_pos = 0;
    }
    if (!started) stable = general ? 0 : stable_room(r);
    if (!stable && r->content.cap - r->content.len < (64u << 10)) {
      if (r->content.cap >= HKT_MAX_FRAME_BYTES)
        return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "frame content larger than %u bytes", HKT_MAX_FRAME_BYTES);
      if (hkt_buf_reserve(&r->content, r->content.cap ? r->content.cap : (256u << 10)))
        return set_err(r, HKT_ERR_NOMEM, r->frame_off, "out of memory");
    }
    ZSTD_inBuffer in = { r->in + r->in_pos, r->in_len - r->in_pos, 0 };
    size_t room = r->content.cap - r->content.len;
    if (r->content.len + room > HKT_MAX_FRAME_BYTES) room = HKT_MAX_FRAME_BYTES - r->content.len;
    ZSTD_outBuffer out = { r->content.p + r->content.len, room, 0 };
    if (stable) out = (ZSTD_outBuffer){ r->content.p, stable, r->content.len };
    size_t ret = ZSTD_decompressStream(r->dctx, &out, &in);
    r->in_pos += in.pos;
    r->consumed += in.pos;
    r->content.len = stable ? out.pos : r->content.len + out.pos;
    if (in.pos) started = 1;
    if (stable && (ZSTD_isError(ret) || (ret && out.pos == out.size)) &&
        lseek(r->fd, (off_t)r->frame_off, SEEK_SET) == (off_t)r->frame_off) {
      r->in_pos = r->in_len = 0;   /* again, the general way */
      r->eof = 0;
      r->consumed = r->frame_off;
      r->content.len = 0;
      started = 0, general = 1, stable = 0;
      ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
      ZSTD_DCtx_setParameter(r->dctx, ZSTD_d_stableOutBuffer, 0);
      continue;
    }
    if (ZSTD_isError(ret)) {
      if (r->frames == 0 && r->frame_off == 0 && ZSTD_getErrorCode(ret) == ZSTD_error_prefix_unknown)
        return set_err(r, HKT_ERR_NOT_TRACE, 0, "not a zstd file, so not a hakmem trace");
      if (ZSTD_getErrorCode(ret) == ZSTD_error_prefix_unknown)
        return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "no zstd frame here (garbage after the last frame)");
      if (ZSTD_getErrorCode(ret) == ZSTD_error_checksum_wrong)
        return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "frame checksum mismatch");
      return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "zstd: %s", ZSTD_getErrorName(ret));
    }
    if (ret == 0) {
      r->whole_off = r->consumed;
      if (r->content.len == 0) {   /* skippable frame */
        r->frame_off = r->whole_off;
        started = 0;
        ZSTD_DCtx_reset(r->dctx, ZSTD_reset_session_only);
        ZSTD_DCtx_setParameter(r->dctx, ZSTD_d_stableOutBuffer, 0);
        continue;
      }
      r->frames++;
      return 1;
    }
  }
}

/* ---- the next frame on another thread (_hkt_reader_async) ----
 * A trace is a sequence of independent zstd frames, so the next one can
 * be decompressed while this one is decoded: a thread with
 * time to spare (a replay thread waiting for the reader) calls
 * _hkt_reader_help, which decompresses the frame after the one being
 * decoded into a buffer of its own. Only the plain case is done there (a
 * zstd frame that says its size, whole in the file, decoded without
 * error): anything else, or a job nobody took, is read here the usual
 * way, from the frame's start, so that every error is the same. */
enum { JOB_IDLE, JOB_POSTED, JOB_RUNNING, JOB_DONE, JOB_FAILED };
typedef struct hkt_job {
  _Atomic int state;
  uint64_t off;             /* the frame's offset in the file */
  uint64_t end;             /* JOB_DONE: the offset after it */
  ZSTD_DCtx *dctx;
  uint8_t *in;              /* IN_CAP bytes of the file */
  hkt_buf out;              /* JOB_DONE: the frame's content */
} hkt_job;

/* Decompress the frame at j->off into j->out: 1, or 0 (left to the reader). */
static int run_job(const hkt_reader *r, hkt_job *j) {
  static const uint8_t zstd_magic[4] = { 0x28, 0xb5, 0x2f, 0xfd };
  uint64_t at = j->off;
  ssize_t n = pread(r->fd, j->in, IN_CAP, (off_t)at);
  if (n < 4 || memcmp(j->in, zstd_magic, 4)) return 0;
  unsigned long long cs = ZSTD_getFrameContentSize(j->in, (size_t)n);
  if (cs == 0 || cs > HKT_MAX_FRAME_BYTES - STABLE_SLACK) return 0;   /* also UNKNOWN and ERROR (as stable_room) */
  j->out.len = 0;
  size_t room = (size_t)cs + STABLE_SLACK;   /* as stable_room: a frame that says less than it has fails */
  if (j->out.cap < room && hkt_buf_reserve(&j->out, room)) return 0;
  ZSTD_DCtx_reset(j->dctx, ZSTD_reset_session_only);
  if (ZSTD_isError(ZSTD_DCtx_setParameter(j->dctx, ZSTD_d_stableOutBuffer, 1))) return 0;
  ZSTD_outBuffer out = { j->out.p, room, 0 };
  for (;;) {
    ZSTD_inBuffer in = { j->in, (size_t)n, 0 };
    size_t before = out.pos;
    size_t ret = ZSTD_decompressStream(j->dctx, &out, &in);
    if (ZSTD_isError(ret) || (ret && out.pos == out.size)) return 0;
    at += in.pos;
    if (ret == 0) break;
    if (!in.pos && out.pos == before) return 0;   /* no progress: not the plain case */
    n = pread(r->fd, j->in, IN_CAP, (off_t)at);
    if (n <= 0) return 0;   /* cut: the reader says where */
  }
  if (out.pos != cs) return 0;
  j->out.len = out.pos;
  j->end = at;
  return 1;
}

/* A replay thread's spare time: decompress the posted frame, if any and
 * nobody has taken it. 1: it did (successfully or not), 0: nothing to do. */
int _hkt_reader_help(hkt_reader *r) {
  hkt_job *j = r ? r->job : NULL;
  int s = JOB_POSTED;
  if (!j || atomic_load_explicit(&j->state, memory_order_relaxed) != JOB_POSTED ||
      !atomic_compare_exchange_strong(&j->state, &s, JOB_RUNNING))
    return 0;
  int ok = run_job(r, j);
  atomic_store_explicit(&j->state, ok ? JOB_DONE : JOB_FAILED, memory_order_release);
  return 1;
}

/* The job's state once nobody works on it: a posted job nobody took is
 * taken back (JOB_IDLE), a running one waited for, up to max_ns; then
 * JOB_RUNNING (its thread lost its CPU: the reader reads the frame
 * itself rather than wait a time slice, and posts no job until that one
 * is over). */
static int job_settle(hkt_job *j, uint64_t max_ns) {
  int s = JOB_POSTED;
  if (atomic_compare_exchange_strong(&j->state, &s, JOB_IDLE)) return JOB_IDLE;
  uint64_t t0 = 0;
  for (unsigned spin = 0; (s = atomic_load_explicit(&j->state, memory_order_acquire)) == JOB_RUNNING; spin++) {
    if (spin < 256) { _mm_pause(); continue; }
    uint64_t t = hkt_mono_ns();
    if (!t0) t0 = t;
    else if (t - t0 > max_ns) break;
    sched_yield();
  }
  return s;
}

#define JOB_WAIT_NS 1000000u   /* a frame's decompression takes about 0.7 ms */

/* The next frame from the job, if it has it whole: 1 (in r->content, the
 * file position after it), or 0 (read it here). */
static int take_job(hkt_reader *r) {
  hkt_job *j = r->job;
  int s = job_settle(j, JOB_WAIT_NS);
  if (s == JOB_RUNNING) return 0;
  atomic_store_explicit(&j->state, JOB_IDLE, memory_order_relaxed);
  if (s != JOB_DONE || j->off != r->whole_off || lseek(r->fd, (off_t)j->end, SEEK_SET) != (off_t)j->end) return 0;
  hkt_buf c = r->content;
  r->content = j->out;
  j->out = c;
  r->frame_off = j->off;
  r->whole_off = r->consumed = j->end;
  r->in_pos = r->in_len = 0;   /* the file is read on from the job's end */
  r->eof = 0;
  r->frames++;
  return 1;
}

/* A job for the next frame, unless one still runs (a later take_job
 * finds it over, for another frame, and drops it). */
static void post_job(hkt_reader *r) {
  if (atomic_load_explicit(&r->job->state, memory_order_acquire) != JOB_IDLE) return;
  r->job->off = r->whole_off;
  atomic_store_explicit(&r->job->state, JOB_POSTED, memory_order_release);
}

static int read_frame(hkt_reader *r) {
  if (r->job && take_job(r)) { post_job(r); return 1; }
  int e = read_frame_here(r);
  if (e == 1 && r->job) post_job(r);
  return e;
}

static void job_free(hkt_job *j) {
  if (!j) return;
  job_settle(j, UINT64_MAX);   /* its thread may be decompressing into j->out */
  ZSTD_freeDCtx(j->dctx);
  hkt_mem_free(j->in);
  hkt_buf_release(&j->out);
  hkt_mem_free(j);
}

/* From now on each next frame is offered to _hkt_reader_help (before any
 * event is read). 0, or an error (then the reader goes on as it was). */
int _hkt_reader_async(hkt_reader *r) {
  if (!r || r->err || r->job || r->next_seq || r->in_frame) return HKT_ERR_ARG;
  hkt_job *j = hkt_mem_alloc(sizeof *j);
  if (!j) return HKT_ERR_NOMEM;
  memset(j, 0, sizeof *j);
  j->dctx = hkt_zstd_dctx();
  j->in = hkt_mem_alloc(IN_CAP);
  if (!j->dctx || !j->in) { job_free(j); return HKT_ERR_NOMEM; }
  ZSTD_DCtx_setParameter(j->dctx, ZSTD_d_windowLogMax, 26);   /* as r->dctx */
  r->job = j;
  post_job(r);
  return 0;
}

static const char *store_str(hkt_reader *r, hkt_cur *c, uint64_t *off) {
  uint64_t n = hkt_get_varint(c);
  const uint8_t *s = c->bad ? NULL : hkt_get_bytes(c, n);
  if (!s) return NULL;
  *off = r->hstore.len;
  hkt_buf_put(&r->hstore, s, n);
  hkt_buf_byte(&r->hstore, 0);
  return "";
}

static int parse_header(hkt_reader *r) {
  const uint8_t *p = r->content.p;
  if (r->content.len < 4 || memcmp(p, HKT_MAGIC_HEADER, 4))
    return set_err(r, HKT_ERR_NOT_TRACE, 0, "a zstd file, but not a hakmem trace (no header frame)");
  hkt_cur c = { p + 4, p + r->content.len, 0 };
  hkt_header *h = &r->hdr;
  uint64_t v = hkt_get_varint(&c);
  if (c.bad) return set_err(r, HKT_ERR_CORRUPT, 0, "header frame too short");
  if (v != 1 && v != 2)
    return set_err(r, HKT_ERR_VERSION, 0, "format version %llu, this build reads versions 1 and 2",
                   (unsigned long long)v);
  r->m.live.tags = 1;
  if (v == 2 && !r->m.rings.ent) {
    r->m.rings.ent = hkt_mem_alloc((size_t)HKT_PTR_SLOTS * HKT_RING_CAP * sizeof *r->m.rings.ent);
    if (!r->m.rings.ent) return set_err(r, HKT_ERR_NOMEM, 0, "out of memory");
  }
  h->version = (uint32_t)v;
  h->pid = (uint32_t)hkt_get_varint(&c);
  h->ppid = (uint32_t)hkt_get_varint(&c);
  h->start_realtime_ns = hkt_get_varint(&c);
  v = hkt_get_varint(&c);
  h->time_shift = v > 32 ? 32 : (uint32_t)v;
  h->tsc_per_sec = hkt_get_varint(&c);
  uint64_t soff[3];
  for (int i = 0; i < 3; i++)
    if (!store_str(r, &c, &soff[i])) return set_err(r, HKT_ERR_CORRUPT, 0, "header frame: bad string");
  h->arena_base = hkt_get_varint(&c);
  v = hkt_get_varint(&c);
  if (v > 64) return set_err(r, HKT_ERR_CORRUPT, 0, "header frame: %llu size classes", (unsigned long long)v);
  h->num_classes = (uint32_t)v;
  for (uint32_t i = 0; i < h->num_classes; i++) h->class_size[i] = (uint32_t)hkt_get_varint(&c);
  v = hkt_get_varint(&c);
  if (c.bad || v > HKT_MAX_MODULES) return set_err(r, HKT_ERR_CORRUPT, 0, "header frame: bad module count");
  h->num_modules = (uint32_t)v;
  uint64_t *moff = hkt_mem_alloc((v + 1) * sizeof *moff);
  r->mods = hkt_mem_alloc((v + 1) * sizeof *r->mods);
  if (!moff || !r->mods) { hkt_mem_free(moff); return set_err(r, HKT_ERR_NOMEM, 0, "out of memory"); }
  for (uint32_t i = 0; i < h->num_modules && !c.bad; i++) {
    hkt_module *m = &r->mods[i];
    if (!store_str(r, &c, &moff[i])) break;
    m->base = hkt_get_varint(&c);
    m->size = hkt_get_varint(&c);
    uint64_t bl = hkt_get_varint(&c);
    const uint8_t *b = bl <= 40 ? hkt_get_bytes(&c, bl) : NULL;
    if (!b) { c.bad = 1; break; }
    memcpy(m->build_id, b, bl);
    m->build_id_len = (uint32_t)bl;
  }
  if (c.bad || r->hstore.failed) {
    hkt_mem_free(moff);
    return set_err(r, c.bad ? HKT_ERR_CORRUPT : HKT_ERR_NOMEM, 0, "header frame: %s",
                   c.bad ? "bad module table" : "out of memory");
  }
  /* Fields added since: a forked child's link to its parent (absent in
   * traces written before them: not a fork child, as far as they say). */
  uint64_t fork1 = 0, poff = UINT64_MAX;
  if (c.p < c.end) {
    fork1 = hkt_get_varint(&c);
    if (c.bad) fork1 = 0;
    if (fork1 && (!store_str(r, &c, &poff) || r->hstore.failed)) {
      hkt_mem_free(moff);
      return set_err(r, HKT_ERR_CORRUPT, 0, "header frame: bad fork fields");
    }
  }
  /* trailing bytes are allowed: later versions may add fields */
  const char *base = (const char *)r->hstore.p;
  h->forked = fork1 != 0;
  h->fork_seq = fork1 ? fork1 - 1 : 0;
  h->parent_trace = poff != UINT64_MAX ? base + poff : "";
  h->clock = base + soff[0];
  h->cmdline = base + soff[1];
  h->config = base + soff[2];
  for (uint32_t i = 0; i < h->num_modules; i++) r->mods[i].path = base + moff[i];
  h->modules = r->mods;
  hkt_mem_free(moff);
  for (uint32_t sz = 0; sz <= CLS_LUT_MAX; sz++) {
    uint32_t c = hkt_predict_cls(HKT_EV_MALLOC, sz, h->class_size, h->num_classes);
    r->cls_lut[sz] = c < 0xff ? (uint8_t)c : 0xff;
  }
  r->data_end = r->whole_off;
  return 0;
}

static int stack_define(hkt_reader *r, uint32_t id, hkt_cur *c, uint32_t n) {
  if (r->nsframes + n > HKT_MAX_STACK_FRAMES) return HKT_ERR_CORRUPT;
  if (r->nsframes + n > r->sframes_cap) {
    uint64_t cap = r->sframes_cap ? r->sframes_cap * 2 : 4096;
    while (cap < r->nsframes + n) cap *= 2;
    uint64_t *p = hkt_mem_realloc(r->sframes, cap * sizeof *p);
    if (!p) return HKT_ERR_NOMEM;
    r->sframes = p;
    r->sframes_cap = cap;
  }
  if (2 * (r->nstacks + 1) > r->stab_cap) {   /* grow and rehash */
    uint32_t cap = r->stab_cap ? r->stab_cap * 2 : 1024;
    stack_ent *t = hkt_mem_alloc((size_t)cap * sizeof *t);
    if (!t) return HKT_ERR_NOMEM;
    for (uint32_t i = 0; i < r->stab_cap; i++) {
      if (!r->stab[i].id) continue;
      uint32_t h = (r->stab[i].id * 0x9e3779b1u) & (cap - 1);
      while (t[h].id) h = (h + 1) & (cap - 1);
      t[h] = r->stab[i];
    }
    hkt_mem_free(r->stab);
    r->stab = t;
    r->stab_cap = cap;
  }
  uint64_t off = r->nsframes, prev = 0;
  for (uint32_t i = 0; i < n; i++) {
    prev += (uint64_t)hkt_unzz(hkt_get_varint(c));
    r->sframes[off + i] = prev;
  }
  if (c->bad) return HKT_ERR_CORRUPT;
  r->nsframes += n;
  uint32_t h = (id * 0x9e3779b1u) & (r->stab_cap - 1);
  while (r->stab[h].id && r->stab[h].id != id) h = (h + 1) & (r->stab_cap - 1);
  if (!r->stab[h].id) r->nstacks++;
  r->stab[h] = (stack_ent){ id, n, off };
  return 0;
}

static int parse_events(hkt_reader *r) {
  const uint8_t *p = r->content.p;
  hkt_cur c = { p + 4, p + r->content.len, 0 };
  uint64_t first = hkt_get_varint(&c), n = hkt_get_varint(&c);
  r->prev_t = hkt_get_varint(&c);
  uint64_t nst = hkt_get_varint(&c);
  if (c.bad) return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "event frame too short");
  if (first != r->next_seq)
    return set_err(r, HKT_ERR_SEQUENCE, r->frame_off, "frame starts at seq %llu, expected %llu",
                   (unsigned long long)first, (unsigned long long)r->next_seq);
  /* every event takes at least 5 bytes (version 1: kind, flags, tid, time,
   * class) or 2 (version 2: head, time) */
  if (n > (1u << 20) || n * (r->hdr.version == 1 ? 5 : 2) > r->content.len)
    return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "frame claims %llu events", (unsigned long long)n);
  for (uint64_t i = 0; i < nst; i++) {
    uint64_t id = hkt_get_varint(&c), nf = hkt_get_varint(&c);
    if (c.bad || !id || id > UINT32_MAX || nf > HKT_MAX_STACK_DEPTH)
      return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "bad stack table");
    int e = stack_define(r, (uint32_t)id, &c, (uint32_t)nf);
    if (e) return set_err(r, e, r->frame_off, e == HKT_ERR_NOMEM ? "out of memory" : "bad stack table");
  }
  uint64_t nc = hkt_get_varint(&c);
  if (c.bad || nc > n) return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "bad callsite table");
  if (nc > r->callers_cap) {
    uint64_t *t = hkt_mem_realloc(r->callers, nc * sizeof *t);
    if (!t) return set_err(r, HKT_ERR_NOMEM, r->frame_off, "out of memory");
    r->callers = t;
    r->callers_cap = (uint32_t)nc;
  }
  uint64_t prev = 0;
  for (uint64_t i = 0; i < nc; i++) r->callers[i] = prev += (uint64_t)hkt_unzz(hkt_get_varint(&c));
  r->ncallers = (uint32_t)nc;
  int ns = r->hdr.version == 1 ? HKT_S_V1_COUNT : HKT_S__COUNT;
  uint64_t len[HKT_S__COUNT] = { 0 }, total = 0;
  for (int i = 0; i < ns; i++) { len[i] = hkt_get_varint(&c); total += len[i]; }
  if (c.bad || total != (uint64_t)(c.end - c.p) || total < len[0])
    return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "stream lengths do not match the frame");
  for (int i = 0; i < HKT_S__COUNT; i++) {   /* streams a version lacks are empty */
    r->s[i] = (hkt_cur){ c.p, c.p + len[i], 0 };
    c.p += len[i];
  }
  if (len[HKT_S_KIND] != n) return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "kind stream length is not the event count");
  if (r->hdr.version == 1 && n > r->alloc_cap) {
    uint64_t *ap = hkt_mem_realloc(r->aptr, n * sizeof *ap);
    if (ap) r->aptr = ap;
    uint32_t *ac = ap ? hkt_mem_realloc(r->acls, n * sizeof *ac) : NULL;
    if (ac) r->acls = ac;
    if (!ap || !ac) return set_err(r, HKT_ERR_NOMEM, r->frame_off, "out of memory");
    r->alloc_cap = (uint32_t)n;
  }
  r->nalloc = 0;
  memset(r->pred, 0, sizeof r->pred);
  if (r->hdr.version == 1) {
    memset(r->freed.n, 0, sizeof r->freed.n);
    memset(r->freed.top, 0, sizeof r->freed.top);
  } else {
    hkt_model_reset(&r->m);   /* live: val is the pointer, tag the class */
    for (unsigned i = 0; i < HKT_TSLOTS; i++) r->m.tlast[i] = r->prev_t;
  }
  r->left = (uint32_t)n;
  r->in_frame = 1;
  return 0;
}

/* End of an event frame: every stream must be used up exactly. */
static int finish_events(hkt_reader *r) {
  r->in_frame = 0;
  for (int i = 0; i < HKT_S__COUNT; i++)
    if (r->s[i].p != r->s[i].end)
      return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "stream %d has %ld bytes left after the frame's events",
                     i, (long)(r->s[i].end - r->s[i].p));
  r->data_end = r->whole_off;
  r->data_events = r->next_seq;
  return 0;
}

/* ---- decoding a chunk of events ---- */

/* A varint past its one-byte form (rare but for pointers and sizes):
 * p NULL when it runs past the stream or over 64 bits. */
typedef struct vres { uint64_t v; const uint8_t *p; } vres;
static __attribute__((noinline)) vres varint_slow(const uint8_t *p, const uint8_t *end) {
  uint64_t v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (p >= end) break;
    uint8_t b = *p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (shift == 63 && b > 1) break;
      return (vres){v, p};
    }
  }
  return (vres){0, NULL};
}

/* dst = the next varint of stream S at cursor p; a bad one notes S in `bad`
 * and empties the stream (the event is then refused as a whole). */
#define VGET(dst, S, cur_, end)                                                  \
  do {                                                                        \
    if (hkt_likely((cur_) < (end) && *(cur_) < 0x80)) {                             \
      (dst) = *(cur_)++;                                                         \
    } else if (hkt_likely((end) - (cur_) >= 2 && (cur_)[1] < 0x80)) {               \
      (dst) = (uint64_t)((cur_)[0] & 0x7f) | (uint64_t)(cur_)[1] << 7;              \
      (cur_) += 2;                                                               \
    } else {                                                                  \
      vres v_ = varint_slow((cur_), (end));                                      \
      if (hkt_unlikely(!v_.p)) { bad = (S) + 1; (cur_) = (end); (dst) = 0; }     \
      else { (dst) = v_.v; (cur_) = v_.p; }                                      \
    }                                                                         \
  } while (0)

/* The predicted class of a MALLOC/REALLOC/ALIGNED of `size`. */
static inline uint32_t predict(const hkt_reader *r, uint64_t size) {
  if (hkt_likely(size <= CLS_LUT_MAX)) {
    uint8_t c = r->cls_lut[size];
    return c == 0xff ? HKT_NO_CLASS : c;
  }
  return hkt_predict_cls(HKT_EV_MALLOC, size, r->hdr.class_size, r->hdr.num_classes);
}

/* Decode the next events of a version 1 frame (at most HKT_BATCH, and none
 * after one with a string) into r->batch. Cursors live in locals for the
 * loop; a bad event ends the chunk before it and sets the (sticky) error. */
/* An event's string and build-id, from the STR stream into r->str and
 * r->bid (valid until the next chunk). Returns non-zero if they run past
 * the stream or are too long. */
static int read_strings(hkt_reader *r, hkt_cur *sc, int want_str, int want_bid, hkt_event *ev) {
  if (want_str) {
    uint64_t n = hkt_get_varint(sc);
    const uint8_t *b = n <= HKT_MAX_STR ? hkt_get_bytes(sc, n) : NULL;
    if (!b) return 1;
    memcpy(r->str, b, n);
    r->str[n] = 0;
    ev->str = r->str;
  }
  if (want_bid) {
    uint64_t n = hkt_get_varint(sc);
    const uint8_t *b = n <= 255 ? hkt_get_bytes(sc, n) : NULL;
    if (!b) return 1;
    memcpy(r->bid, b, n);
    ev->bid = r->bid;
    ev->bid_len = (uint32_t)n;
  }
  return 0;
}

/* A chunk of n events decoded from seq0 on: hand them out, and say why it
 * stopped early (bad: 1 + the stream an event ran past). */
static void end_chunk(hkt_reader *r, uint64_t seq0, uint32_t n, int nomem, int bad_event, int bad) {
  r->next_seq = seq0 + n;
  r->left -= n;
  if (nomem)
    set_err(r, HKT_ERR_NOMEM, r->frame_off, "out of memory");
  else if (bad_event)
    set_err(r, HKT_ERR_CORRUPT, r->frame_off, "bad event at seq %llu", (unsigned long long)(seq0 + n));
  else if (bad)
    set_err(r, HKT_ERR_CORRUPT, r->frame_off, "event at seq %llu runs past its stream %d",
            (unsigned long long)(seq0 + n), bad - 1);
}

static uint32_t decode_chunk_v1(hkt_reader *r, hkt_event *out, uint32_t max) {
  if (max > r->left) max = r->left;
  const uint8_t *kp = r->s[HKT_S_KIND].p;   /* exactly one byte per event (checked per frame) */
  const uint8_t *fp = r->s[HKT_S_FLAGS].p, *fe = r->s[HKT_S_FLAGS].end;
  const uint8_t *tp = r->s[HKT_S_TID].p, *te = r->s[HKT_S_TID].end;
  const uint8_t *mp = r->s[HKT_S_TIME].p, *me = r->s[HKT_S_TIME].end;
  const uint8_t *cp = r->s[HKT_S_CLS].p, *ce = r->s[HKT_S_CLS].end;
  const uint8_t *pp = r->s[HKT_S_PTR].p, *pe = r->s[HKT_S_PTR].end;
  const uint8_t *zp = r->s[HKT_S_SIZE].p, *ze = r->s[HKT_S_SIZE].end;
  const uint8_t *ap = r->s[HKT_S_AUX].p, *ae = r->s[HKT_S_AUX].end;
  const uint8_t *lp = r->s[HKT_S_CALLER].p, *le = r->s[HKT_S_CALLER].end;
  hkt_cur *sc = &r->s[HKT_S_STR];
  const uint64_t seq0 = r->next_seq;
  const unsigned shift = r->hdr.time_shift;
  uint64_t prev_t = r->prev_t;
  int bad = 0, bad_event = 0;
  uint32_t i = 0;
  while (i < max) {
    hkt_event *ev = &out[i];
    uint8_t kind = *kp++, fl = 0, f2 = 0;
    if (hkt_likely(fp < fe)) fl = *fp++; else bad = HKT_S_FLAGS + 1;
    if (fl & HKT_F_EXT) { if (fp < fe) f2 = *fp++; else bad = HKT_S_FLAGS + 1; }
    uint64_t tid, dt;
    VGET(tid, HKT_S_TID, tp, te);
    VGET(dt, HKT_S_TIME, mp, me);
    prev_t += (uint64_t)hkt_unzz(dt);
    if (hkt_unlikely(kind == 0 || kind >= 64 || tid > UINT32_MAX || (f2 & ~7u))) { bad_event = 1; break; }
    ev->seq = seq0 + i;
    ev->time_ns = prev_t << shift;
    ev->tid = (uint32_t)tid;
    ev->kind = kind;
    /* pointer first (a back-reference brings its class), then size, then
     * the class against its prediction, then a delta-coded pointer */
    uint64_t u = 0, abs = 0, size = 0, ptr = 0;
    if (fl & HKT_F_PTR) {
      VGET(u, HKT_S_PTR, pp, pe);
      if (u == 1) VGET(abs, HKT_S_PTR, pp, pe);
      else if ((u & 3) == 1) bad = HKT_S_PTR + 1;   /* reserved */
    }
    if (fl & HKT_F_SIZE) VGET(size, HKT_S_SIZE, zp, ze);
    uint32_t predicted = kind == HKT_EV_MALLOC || kind == HKT_EV_REALLOC || kind == HKT_EV_ALIGNED
                             ? predict(r, size) : HKT_NO_CLASS;
    int is_alloc = hkt_is_alloc(kind);
    int ref = (fl & HKT_F_PTR) && (u & 3) == 3;
    if (ref && kind == HKT_EV_FREE) {          /* back-reference */
      uint64_t d = u >> 2;
      if (d >= r->nalloc) bad = HKT_S_PTR + 1;
      else {
        ptr = r->aptr[r->nalloc - 1 - d];
        predicted = r->acls[r->nalloc - 1 - d];
      }
    } else if (ref && !is_alloc) {
      bad = HKT_S_PTR + 1;
    }
    uint64_t c;
    VGET(c, HKT_S_CLS, cp, ce);
    if (c > (uint64_t)UINT32_MAX + 2) bad = HKT_S_CLS + 1;
    uint32_t cls = c == 0 ? predicted : c == 1 ? HKT_NO_CLASS : (uint32_t)(c - 2);
    ev->cls = cls;
    if (fl & HKT_F_PTR) {
      unsigned slot = hkt_slot(cls);
      if (u == 1) ptr = abs;
      else if (ref && is_alloc) {              /* reuse of a freed block */
        if ((u >> 2) >= r->freed.n[slot]) bad = HKT_S_PTR + 1;
        else ptr = hkt_freed_take(&r->freed, slot, (unsigned)(u >> 2));
      } else if (!ref) ptr = r->pred[slot] + ((uint64_t)hkt_unzz(u >> 1) << 3);
      r->pred[slot] = ptr;
      if (kind == HKT_EV_FREE) hkt_freed_push(&r->freed, slot, ptr);
      else if (is_alloc && r->nalloc < r->alloc_cap) {
        r->aptr[r->nalloc] = ptr;
        r->acls[r->nalloc++] = cls;
      }
    }
    ev->ptr = ptr;
    ev->size = size;
    uint64_t aux = 0, aux2 = 0, aux3 = 0, fn = 0, sid = 0, caller = 0;
    if (fl & (HKT_F_AUX | HKT_F_AUX2 | HKT_F_AUX3 | HKT_F_FN)) {
      if (fl & HKT_F_AUX) VGET(aux, HKT_S_AUX, ap, ae);
      if (fl & HKT_F_AUX2) VGET(aux2, HKT_S_AUX, ap, ae);
      if (fl & HKT_F_AUX3) VGET(aux3, HKT_S_AUX, ap, ae);
      if (fl & HKT_F_FN) {
        VGET(fn, HKT_S_AUX, ap, ae);
        if (fn > 0xffff) bad = HKT_S_AUX + 1;
      }
    }
    ev->aux = aux;
    ev->aux2 = aux2;
    ev->aux3 = aux3;
    ev->fn = (uint16_t)fn;
    ev->str = NULL;
    ev->bid = NULL;
    ev->bid_len = 0;
    if (f2 & HKT_F2_STACK) {
      VGET(sid, HKT_S_AUX, ap, ae);
      if (sid > UINT32_MAX) bad = HKT_S_AUX + 1;
    }
    ev->stack_id = (uint32_t)sid;
    if (fl & HKT_F_CALLER) {
      uint64_t k;
      VGET(k, HKT_S_CALLER, lp, le);
      if (k >= r->ncallers) bad = HKT_S_CALLER + 1;
      else caller = r->callers[k];
    }
    ev->caller = caller;
    if (hkt_unlikely(f2 & (HKT_F2_STR | HKT_F2_BID))) {
      if (read_strings(r, sc, f2 & HKT_F2_STR, f2 & HKT_F2_BID, ev)) bad = HKT_S_STR + 1;
      if (!bad) i++;
      break;   /* the string lives in r->str until the next chunk */
    }
    if (hkt_unlikely(bad)) break;
    i++;
  }
  r->s[HKT_S_KIND].p = kp;
  r->s[HKT_S_FLAGS].p = fp;
  r->s[HKT_S_TID].p = tp;
  r->s[HKT_S_TIME].p = mp;
  r->s[HKT_S_CLS].p = cp;
  r->s[HKT_S_PTR].p = pp;
  r->s[HKT_S_SIZE].p = zp;
  r->s[HKT_S_AUX].p = ap;
  r->s[HKT_S_CALLER].p = lp;
  r->prev_t = prev_t;
  end_chunk(r, seq0, i, 0, bad_event, bad);
  return i;
}

/* The class a version 2 reader predicts before the pointer (docs: step 8). */
static inline uint32_t predict_v2(const hkt_reader *r, unsigned kind, uint64_t size, uint64_t aux, unsigned ts) {
  if (kind == HKT_EV_MALLOC || kind == HKT_EV_REALLOC || kind == HKT_EV_ALIGNED) return predict(r, size);
  if (kind == HKT_EV_CALLOC) {
    uint64_t bytes;
    return __builtin_mul_overflow(size, aux, &bytes) ? HKT_NO_CLASS : predict(r, bytes);
  }
  return r->m.lcls[ts];
}

/* ---- the live allocations (hkt_live, hkt_internal.h) ----
 * A FREE's select with BMI2 and POPCNT (most x86-64 since 2013) where the
 * CPU has them: it is latency on the decoder's critical path, each one
 * waiting for the counts the one before updated. */
#define HKT_FAST_ISA "avx2,bmi,bmi2,popcnt"
__attribute__((target(HKT_FAST_ISA))) static inline unsigned select_bmi2(uint64_t x, uint32_t want) {
  return (unsigned)__builtin_ctzll(_pdep_u64(1ull << (want - 1), x));
}
__attribute__((target(HKT_FAST_ISA))) static inline uint32_t popcount_isa(uint64_t x) {
  return (uint32_t)__builtin_popcountll(x);
}

/* hkt_lanes_add with one 256-bit add for the 16 lanes: the same words. */
__attribute__((target(HKT_FAST_ISA))) static inline void lanes_add_avx2(uint64_t *p, uint32_t i, const int up) {
  __m256i m = _mm256_loadu_si256((const __m256i *)(hkt_ones_from + 16 - i));   /* 1 in lanes i.. */
  __m256i a = _mm256_loadu_si256((const __m256i *)p);
  a = up ? _mm256_add_epi16(a, m) : _mm256_sub_epi16(a, m);
  _mm256_storeu_si256((__m256i *)p, a);
}

/* hkt_live_count of one allocation number k going live (up) or dead. */
static inline __attribute__((always_inline)) void live_count(hkt_live_slot *s, uint32_t k, const int up, const int isa) {
  if (!isa) {
    hkt_live_count(s, k, up ? 1 : ~0ull);
    return;
  }
  uint32_t w = k / 64, g = w / 16;
  lanes_add_avx2(&s->p1[g * 4], w % 16, up);
  lanes_add_avx2(&s->p2[g / 16 * 4], g % 16, up);
  s->c3[g / 16] += up ? 1 : (uint32_t)-1;
  s->nlive += up ? 1 : (uint32_t)-1;
}

/* As hkt_live_find; isa: the CPU has HKT_FAST_ISA. */
static inline __attribute__((always_inline)) uint32_t live_find(const hkt_live_slot *s, uint32_t rank, const int isa) {
  uint32_t want, w = hkt_live_locate(s, rank, &want);
  if (w == UINT32_MAX) return UINT32_MAX;
  uint64_t x = s->bits[w];
  if (hkt_unlikely(want == 0 || (isa ? popcount_isa(x) : hkt_popcount(x)) < want)) return UINT32_MAX;
  uint32_t k = w * 64 + (isa ? select_bmi2(x, want) : hkt_select64(x, want));
  return k < s->n ? k : UINT32_MAX;
}

/* ---- version 2 fast paths ----
 * Nearly every event of a trace is a MALLOC or a FREE whose flags are the
 * ones predicted (or a REMOTE_PUSH, with cross-thread frees). For those,
 * decode_chunk_v2 first runs decode_fast_v2: a straight path per kind,
 * without the general path's tests per field. It reads every input into
 * locals, and only when all of them are there and well formed (varints
 * within their streams, indexes in range, a ring entry or a live block
 * found, room for one more allocation) does it update the model; anything
 * else is left, from the same state, to decode_general_v2, which reads it
 * the long way or reports the error exactly as before. */

/* A varint at *p, advanced past it: 1, or 0 (run out or malformed: left
 * to the general path). */
static inline int vget(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  const uint8_t *q = *p;
  if (hkt_likely(q < end && *q < 0x80)) { *v = *q; *p = q + 1; return 1; }
  vres x = varint_slow(q, end);
  if (!x.p) return 0;
  *v = x.v;
  *p = x.p;
  return 1;
}

/* lean: time_ns and caller are not the consumer's (HKT_SKIP_TIME and
 * HKT_SKIP_CALLER): not computed, not stored. */
static inline __attribute__((always_inline)) void put_event(hkt_event *ev, uint64_t seq, uint64_t time_ns,
                                                            uint32_t tid, unsigned kind, uint32_t cls, uint64_t ptr,
                                                            uint64_t size, uint64_t aux, uint64_t aux2, uint64_t caller,
                                                            const int lean) {
  ev->seq = seq;
  if (!lean) ev->time_ns = time_ns;
  ev->tid = tid;
  ev->kind = (uint16_t)kind;
  ev->fn = 0;
  ev->cls = cls;
  ev->stack_id = 0;
  ev->ptr = ptr;
  ev->size = size;
  ev->aux = aux;
  ev->aux2 = aux2;
  ev->aux3 = 0;
  if (!lean) ev->caller = caller;
  ev->str = NULL;
  ev->bid = NULL;
  ev->bid_len = 0;
}

#define G_MALLOC (HKT_G_PTR | HKT_G_SIZE | HKT_G_CALLER)
#define G_FREE   (HKT_G_PTR | HKT_G_CALLER)
#define G_PUSH   (HKT_G_PTR | HKT_G_AUX | HKT_G_AUX2)

/* The events from out[i] on (below max) that a fast path takes: returns
 * the index of the first it does not (left to decode_general_v2). Built
 * twice, for CPUs with HKT_FAST_ISA and without. */
static inline __attribute__((always_inline)) uint32_t decode_fast_v2(hkt_reader *r, hkt_event *out, uint32_t i, uint32_t max,
                                                                         const int isa, const int lean) {
  const uint8_t *hp = r->s[HKT_S_HEAD].p;
  const uint8_t *tp = r->s[HKT_S_TID].p, *te = r->s[HKT_S_TID].end;
  const uint8_t *mp = r->s[HKT_S_TIME].p, *me = r->s[HKT_S_TIME].end;
  const uint8_t *pp = r->s[HKT_S_PTR].p, *pe = r->s[HKT_S_PTR].end;
  const uint8_t *zp = r->s[HKT_S_SIZE].p, *ze = r->s[HKT_S_SIZE].end;
  const uint8_t *ap = r->s[HKT_S_AUX].p, *ae = r->s[HKT_S_AUX].end;
  const uint8_t *lp = r->s[HKT_S_CALLER].p, *le = r->s[HKT_S_CALLER].end;
  const uint8_t *slp = r->s[HKT_S_SIZE_LO].p, *sle = r->s[HKT_S_SIZE_LO].end;
  const uint8_t *flp = r->s[HKT_S_FREE_LO].p, *fle = r->s[HKT_S_FREE_LO].end;
  const uint8_t *fhp = r->s[HKT_S_FREE_HI].p, *fhe = r->s[HKT_S_FREE_HI].end;
  hkt_rings *rg = &r->m.rings;
  hkt_live *live = &r->m.live;
  const uint64_t seq0 = r->next_seq;
  const unsigned shift = r->hdr.time_shift;
  const uint32_t ncallers = r->ncallers;
  const uint64_t *callers = r->callers;
  uint32_t tid = r->m.prev_tid;
  /* The kinds whose flags are as their path expects (fpred changes only
   * on the general path): the HEAD bits each path takes, or none (0xff
   * matches no HEAD byte masked so). */
  const unsigned fk_malloc = r->m.fpred[HKT_EV_MALLOC] == G_MALLOC ? HKT_EV_MALLOC : 0xff;
  const unsigned fk_free = r->m.fpred[HKT_EV_FREE] == G_FREE ? HKT_EV_FREE : 0xff;
  const unsigned fk_push = r->m.fpred[HKT_EV_REMOTE_PUSH] == G_PUSH ? HKT_EV_REMOTE_PUSH : 0xff;
  while (i < max) {
    hkt_event *ev = &out[i];
    uint8_t head = *hp;
    unsigned fk = head & (HKT_H_KIND | HKT_H_FLAGS);
    if (fk == fk_malloc) {
      const uint8_t *tq = tp, *mq = mp, *pq = pp, *zq = zp, *lq = lp;
      uint64_t ntid = tid, dt, u, hi, k;
      if ((head & HKT_H_TID) && (!vget(&tq, te, &ntid) || ntid > UINT32_MAX)) goto stop;
      if (!vget(&mq, me, &dt) || !vget(&pq, pe, &u) || slp >= sle || !vget(&zq, ze, &hi) || hi > CLS_LUT_MAX >> 8)
        goto stop;
      uint64_t size = *slp | hi << 8;
      if (size > CLS_LUT_MAX) goto stop;
      unsigned ts = hkt_tslot((uint32_t)ntid);
      uint32_t *cpd = &r->m.cpred[ts * 64 + HKT_EV_MALLOC];
      k = *cpd;
      if ((head & HKT_H_CALLER) && !vget(&lq, le, &k)) goto stop;
      if (k >= ncallers) goto stop;
      uint8_t c8 = r->cls_lut[size];
      uint32_t cls = c8 == 0xff ? HKT_NO_CLASS : c8;
      unsigned slot = hkt_slot(cls);
      hkt_live_slot *ls = &live->s[ts];
      if (ls->n >= ls->cap) goto stop;
      uint64_t ptr;
      if ((u & 3) == HKT_P_DELTA) {
        ptr = r->m.npred[slot] + ((uint64_t)hkt_unzz(u >> 2) << 3);
        r->m.npred[slot] = ptr;
      } else if ((u & 3) == HKT_P_RING || u == HKT_P_STRIDE) {   /* hkt_ring_get and _take */
        uint64_t *ring = rg->ent + (size_t)slot * HKT_RING_CAP;
        uint32_t top = rg->top[slot], lo = rg->lo[slot];
        uint32_t pos = u == HKT_P_STRIDE ? rg->cursor[slot] + (uint32_t)rg->stride[slot] : top - 1 - (uint32_t)(u >> 2);
        if ((u >> 2) >= top || pos < lo || pos >= top || !(ptr = ring[pos & (HKT_RING_CAP - 1)])) goto stop;
        ring[pos & (HKT_RING_CAP - 1)] = 0;
        rg->stride[slot] = (int32_t)(pos - rg->cursor[slot]);
        rg->cursor[slot] = pos;
        while (top > lo && !ring[(top - 1) & (HKT_RING_CAP - 1)]) top--;
        rg->top[slot] = top;
      } else {
        goto stop;
      }
      hp++, tp = tq, mp = mq, pp = pq, slp++, zp = zq, lp = lq;
      tid = (uint32_t)ntid;
      uint64_t t = lean ? 0 : (r->m.tlast[ts] += (uint64_t)hkt_unzz(dt));
      if (cls != HKT_NO_CLASS) r->m.lcls[ts] = cls;
      r->pred[slot] = ptr;
      uint32_t n = ls->n++;
      ls->val[n] = ptr;
      ls->tag[n] = cls;
      ls->bits[n / 64] |= 1ull << (n % 64);
      live_count(ls, n, 1, isa);
      *cpd = (uint32_t)k;
      put_event(ev, seq0 + i, t << shift, tid, HKT_EV_MALLOC, cls, ptr, size, 0, 0, lean ? 0 : callers[k], lean);
      i++;
      continue;
    }
    if (fk == fk_free) {
      const uint8_t *tq = tp, *mq = mp, *pq = pp, *fq = fhp, *lq = lp;
      uint64_t ntid = tid, dt, hi, k;
      if ((head & HKT_H_TID) && (!vget(&tq, te, &ntid) || ntid > UINT32_MAX)) goto stop;
      if (!vget(&mq, me, &dt) || flp >= fle || !vget(&fq, fhe, &hi) || (hi >> 56)) goto stop;
      uint64_t u = *flp | hi << 8;
      unsigned ts = hkt_tslot((uint32_t)ntid);
      uint32_t *cpd = &r->m.cpred[ts * 64 + HKT_EV_FREE];
      k = *cpd;
      if ((head & HKT_H_CALLER) && !vget(&lq, le, &k)) goto stop;
      if (k >= ncallers) goto stop;
      uint64_t ptr;
      uint32_t cls;
      if ((u & 3) == HKT_P_BACK || (u & 3) == HKT_P_XBACK) {
        uint64_t at = ts;
        if ((u & 3) == HKT_P_XBACK && (!vget(&pq, pe, &at) || at >= HKT_TSLOTS)) goto stop;
        uint64_t d = u >> 2;
        hkt_live_slot *ls = &live->s[at];
        uint32_t kk = d <= UINT32_MAX ? live_find(ls, (uint32_t)d, isa) : UINT32_MAX;
        if (kk == UINT32_MAX) goto stop;
        ls->bits[kk / 64] &= ~(1ull << (kk % 64));   /* hkt_live_slot_kill */
        live_count(ls, kk, 0, isa);
        ptr = live->s[at].val[kk];
        cls = live->s[at].tag[kk];
      } else if ((u & 3) == HKT_P_DELTA) {
        cls = r->m.lcls[ts];
        ptr = r->pred[hkt_slot(cls)] + ((uint64_t)hkt_unzz(u >> 2) << 3);
      } else {
        goto stop;
      }
      hp++, tp = tq, mp = mq, pp = pq, flp++, fhp = fq, lp = lq;
      tid = (uint32_t)ntid;
      uint64_t t = lean ? 0 : (r->m.tlast[ts] += (uint64_t)hkt_unzz(dt));
      if (cls != HKT_NO_CLASS) r->m.lcls[ts] = cls;
      unsigned slot = hkt_slot(cls);
      r->pred[slot] = ptr;
      uint32_t top = rg->top[slot]++;   /* hkt_ring_push */
      rg->ent[(size_t)slot * HKT_RING_CAP + (top & (HKT_RING_CAP - 1))] = ptr;
      if (top + 1 - rg->lo[slot] > HKT_RING_CAP) rg->lo[slot] = top + 1 - HKT_RING_CAP;
      *cpd = (uint32_t)k;
      put_event(ev, seq0 + i, t << shift, tid, HKT_EV_FREE, cls, ptr, 0, 0, 0, lean ? 0 : callers[k], lean);
      i++;
      continue;
    }
    if (fk == fk_push) {
      const uint8_t *tq = tp, *mq = mp, *pq = pp, *aq = ap;
      uint64_t ntid = tid, dt, u, aux, aux2;
      if ((head & HKT_H_TID) && (!vget(&tq, te, &ntid) || ntid > UINT32_MAX)) goto stop;
      if ((head & HKT_H_CALLER) || !vget(&mq, me, &dt) || !vget(&pq, pe, &u) || (u & 3) != HKT_P_DELTA ||
          !vget(&aq, ae, &aux) || !vget(&aq, ae, &aux2))
        goto stop;
      hp++, tp = tq, mp = mq, pp = pq, ap = aq;
      tid = (uint32_t)ntid;
      unsigned ts = hkt_tslot(tid);
      uint64_t t = lean ? 0 : (r->m.tlast[ts] += (uint64_t)hkt_unzz(dt));
      uint32_t cls = r->m.lcls[ts];
      unsigned slot = hkt_slot(cls);
      uint64_t ptr = r->pred[slot] += (uint64_t)hkt_unzz(u >> 2) << 3;
      aux = r->m.apred[HKT_EV_REMOTE_PUSH] = hkt_aux_base(HKT_EV_REMOTE_PUSH, ptr, 0) + (uint64_t)hkt_unzz(aux);
      put_event(ev, seq0 + i, t << shift, tid, HKT_EV_REMOTE_PUSH, cls, ptr, 0, aux, aux2, 0, lean);
      i++;
      continue;
    }
    break;
  }
stop:
  r->s[HKT_S_HEAD].p = hp;
  r->s[HKT_S_TID].p = tp;
  r->s[HKT_S_TIME].p = mp;
  r->s[HKT_S_PTR].p = pp;
  r->s[HKT_S_SIZE].p = zp;
  r->s[HKT_S_AUX].p = ap;
  r->s[HKT_S_CALLER].p = lp;
  r->s[HKT_S_SIZE_LO].p = slp;
  r->s[HKT_S_FREE_LO].p = flp;
  r->s[HKT_S_FREE_HI].p = fhp;
  r->m.prev_tid = tid;
  return i;
}

/* Built four times: with HKT_FAST_ISA or without, lean or not. */
static __attribute__((noinline)) uint32_t decode_fast_v2_base(hkt_reader *r, hkt_event *out, uint32_t i, uint32_t max) {
  return decode_fast_v2(r, out, i, max, 0, 0);
}
__attribute__((target(HKT_FAST_ISA), noinline)) static uint32_t decode_fast_v2_isa(hkt_reader *r, hkt_event *out,
                                                                                  uint32_t i, uint32_t max) {
  return decode_fast_v2(r, out, i, max, 1, 0);
}
static __attribute__((noinline)) uint32_t decode_fast_v2_base_lean(hkt_reader *r, hkt_event *out, uint32_t i,
                                                                   uint32_t max) {
  return decode_fast_v2(r, out, i, max, 0, 1);
}
__attribute__((target(HKT_FAST_ISA), noinline)) static uint32_t decode_fast_v2_isa_lean(hkt_reader *r, hkt_event *out,
                                                                                       uint32_t i, uint32_t max) {
  return decode_fast_v2(r, out, i, max, 1, 1);
}

/* Why decode_general_v2 ended the chunk. */
typedef struct v2_stop { int bad, bad_event, nomem; } v2_stop;

/* Event out[*i] by the general path: the writer's model (writer.c) run
 * backwards, every field as its flags say. 1: decoded (*i advanced), go
 * on; 0: the chunk ends here (an error in *why, or after an event with a
 * string, which lives in r->str until the next chunk). */
static int decode_general_v2(hkt_reader *r, hkt_event *out, uint32_t *ip, v2_stop *why) {
  const uint8_t *hp = r->s[HKT_S_HEAD].p;   /* exactly one byte per event (checked per frame) */
  const uint8_t *fp = r->s[HKT_S_FLAGS].p, *fe = r->s[HKT_S_FLAGS].end;
  const uint8_t *tp = r->s[HKT_S_TID].p, *te = r->s[HKT_S_TID].end;
  const uint8_t *mp = r->s[HKT_S_TIME].p, *me = r->s[HKT_S_TIME].end;
  const uint8_t *cp = r->s[HKT_S_CLS].p, *ce = r->s[HKT_S_CLS].end;
  const uint8_t *pp = r->s[HKT_S_PTR].p, *pe = r->s[HKT_S_PTR].end;
  const uint8_t *zp = r->s[HKT_S_SIZE].p, *ze = r->s[HKT_S_SIZE].end;
  const uint8_t *ap = r->s[HKT_S_AUX].p, *ae = r->s[HKT_S_AUX].end;
  const uint8_t *lp = r->s[HKT_S_CALLER].p, *le = r->s[HKT_S_CALLER].end;
  const uint8_t *slp = r->s[HKT_S_SIZE_LO].p, *sle = r->s[HKT_S_SIZE_LO].end;
  const uint8_t *flp = r->s[HKT_S_FREE_LO].p, *fle = r->s[HKT_S_FREE_LO].end;
  const uint8_t *fhp = r->s[HKT_S_FREE_HI].p, *fhe = r->s[HKT_S_FREE_HI].end;
  hkt_cur *sc = &r->s[HKT_S_STR];
  hkt_rings *rg = &r->m.rings;
  const uint64_t seq0 = r->next_seq;
  const unsigned shift = r->hdr.time_shift;
  uint32_t tid = r->m.prev_tid;
  uint32_t i = *ip;
  hkt_event *ev = &out[i];
  int bad = 0, bad_event = 0, nomem = 0, go_on = 0;
  do {
    uint8_t head = *hp++;
    unsigned kind = head & HKT_H_KIND;
    if (hkt_unlikely(kind == HKT_H_KESC)) {
      if (fp < fe) kind = *fp++;
      else bad = HKT_S_FLAGS + 1;
    }
    if (hkt_unlikely(kind == 0 || kind >= 64)) { bad_event = 1; break; }
    uint64_t g = r->m.fpred[kind];
    if (head & HKT_H_FLAGS) {
      VGET(g, HKT_S_FLAGS, fp, fe);
      if (g & ~(uint64_t)HKT_G_ALL) { bad_event = 1; break; }
      r->m.fpred[kind] = (uint16_t)g;
    }
    if (head & HKT_H_TID) {
      uint64_t t64;
      VGET(t64, HKT_S_TID, tp, te);
      if (t64 > UINT32_MAX) { bad_event = 1; break; }
      tid = (uint32_t)t64;
    }
    if (hkt_unlikely((head & HKT_H_CALLER) && !(g & HKT_G_CALLER))) { bad_event = 1; break; }
    uint64_t dt;
    VGET(dt, HKT_S_TIME, mp, me);
    unsigned ts = hkt_tslot(tid);
    uint64_t t = r->m.tlast[ts] += (uint64_t)hkt_unzz(dt);   /* against the thread's last */
    ev->seq = seq0 + i;
    ev->time_ns = t << shift;
    ev->tid = tid;
    ev->kind = (uint16_t)kind;
    uint64_t u = 0, abs = 0, size = 0, ptr = 0;
    if (g & HKT_G_PTR) {
      if (kind == HKT_EV_FREE) {   /* low byte and the rest apart */
        uint64_t hi;
        if (flp < fle) u = *flp++;
        else bad = HKT_S_FREE_LO + 1;
        VGET(hi, HKT_S_FREE_HI, fhp, fhe);
        if (hi >> 56) bad = HKT_S_FREE_HI + 1;
        u |= hi << 8;
      } else {
        VGET(u, HKT_S_PTR, pp, pe);
      }
      if (u == HKT_P_ABS) VGET(abs, HKT_S_PTR, pp, pe);
    }
    if (g & HKT_G_SIZE) {
      uint64_t hi;
      if (slp < sle) size = *slp++;
      else bad = HKT_S_SIZE_LO + 1;
      VGET(hi, HKT_S_SIZE, zp, ze);
      if (hi >> 56) bad = HKT_S_SIZE + 1;
      size |= hi << 8;
    }
    uint64_t aux = 0, aux2 = 0, aux3 = 0, fn = 0, sid = 0, caller = 0;
    if (g & (HKT_G_AUX | HKT_G_AUX2 | HKT_G_AUX3 | HKT_G_FN | HKT_G_STACK)) {
      if (g & HKT_G_AUX) {   /* a REMOTE_PUSH's once its pointer is known */
        VGET(aux, HKT_S_AUX, ap, ae);
        if (kind != HKT_EV_REMOTE_PUSH) aux = r->m.apred[kind] += (uint64_t)hkt_unzz(aux);
      }
      if (g & HKT_G_AUX2) VGET(aux2, HKT_S_AUX, ap, ae);
      if (g & HKT_G_AUX3) VGET(aux3, HKT_S_AUX, ap, ae);
      if (g & HKT_G_FN) {
        VGET(fn, HKT_S_AUX, ap, ae);
        if (fn > 0xffff) bad = HKT_S_AUX + 1;
      }
      if (g & HKT_G_STACK) {
        VGET(sid, HKT_S_AUX, ap, ae);
        if (sid > UINT32_MAX) bad = HKT_S_AUX + 1;
      }
    }
    uint32_t predicted = predict_v2(r, kind, size, aux, ts);
    int is_alloc = hkt_is_alloc(kind);
    unsigned form = (unsigned)(u & 3);
    int back = (g & HKT_G_PTR) && kind == HKT_EV_FREE && (form == HKT_P_BACK || form == HKT_P_XBACK);
    if (back) {   /* a live allocation of this frame */
      uint64_t d = u >> 2;
      uint32_t k = 0;
      unsigned at = ts;
      if (form == HKT_P_XBACK) {   /* another slot's: the slot follows in PTR */
        uint64_t a;
        VGET(a, HKT_S_PTR, pp, pe);
        if (a >= HKT_TSLOTS) bad = HKT_S_PTR + 1;
        at = (unsigned)a & (HKT_TSLOTS - 1);
      }
      k = d <= UINT32_MAX ? hkt_live_find(&r->m.live, at, (uint32_t)d) : UINT32_MAX;
      if (k == UINT32_MAX) bad = HKT_S_PTR + 1;
      else {
        hkt_live_kill(&r->m.live, at, k);
        ptr = r->m.live.s[at].val[k];
        predicted = r->m.live.s[at].tag[k];
      }
    }
    uint32_t cls = predicted;
    if (g & HKT_G_CLS) {
      uint64_t c;
      VGET(c, HKT_S_CLS, cp, ce);
      if (c > (uint64_t)UINT32_MAX + 1) bad = HKT_S_CLS + 1;
      cls = c == 0 ? HKT_NO_CLASS : (uint32_t)(c - 1);
      if (cls == predicted) bad = HKT_S_CLS + 1;   /* a written class differs from the prediction */
    }
    if (cls != HKT_NO_CLASS) r->m.lcls[ts] = cls;
    ev->cls = cls;
    if (g & HKT_G_PTR) {
      unsigned slot = hkt_slot(cls);
      if (u == HKT_P_ABS) ptr = abs;
      else if (form == HKT_P_DELTA) {
        uint64_t base = is_alloc ? r->m.npred[slot] : r->pred[slot];
        ptr = base + ((uint64_t)hkt_unzz(u >> 2) << 3);
      } else if (is_alloc && (form == HKT_P_RING || u == HKT_P_STRIDE)) {
        uint32_t pos = u == HKT_P_STRIDE ? rg->cursor[slot] + (uint32_t)rg->stride[slot]
                                         : rg->top[slot] - 1 - (uint32_t)(u >> 2);
        if ((u >> 2) >= rg->top[slot] || !(ptr = hkt_ring_get(rg, slot, pos))) bad = HKT_S_PTR + 1;
        else hkt_ring_take(rg, slot, pos);
      } else if (!back) {
        bad = HKT_S_PTR + 1;   /* a code this kind does not have */
      }
      if (hkt_unlikely(bad)) break;
      if (is_alloc && (form == HKT_P_DELTA || u == HKT_P_ABS)) r->m.npred[slot] = ptr;
      r->pred[slot] = ptr;
      if (kind == HKT_EV_FREE) hkt_ring_push(rg, slot, ptr);
      else if (is_alloc) {
        uint32_t k;
        if (hkt_live_add(&r->m.live, ts, ptr, &k)) { nomem = 1; break; }
        r->m.live.s[ts].tag[k] = cls;
      }
    }
    if (kind == HKT_EV_REMOTE_PUSH && (g & HKT_G_AUX))
      aux = r->m.apred[kind] = hkt_aux_base(kind, ptr, 0) + (uint64_t)hkt_unzz(aux);
    ev->ptr = ptr;
    ev->size = size;
    ev->aux = aux;
    ev->aux2 = aux2;
    ev->aux3 = aux3;
    ev->fn = (uint16_t)fn;
    ev->stack_id = (uint32_t)sid;
    ev->str = NULL;
    ev->bid = NULL;
    ev->bid_len = 0;
    if (g & HKT_G_CALLER) {
      uint32_t *cpd = &r->m.cpred[ts * 64 + kind];
      uint64_t k = *cpd;
      if (head & HKT_H_CALLER) {
        VGET(k, HKT_S_CALLER, lp, le);
        if (k < r->ncallers) *cpd = (uint32_t)k;
      }
      if (k >= r->ncallers) bad = HKT_S_CALLER + 1;
      else caller = r->callers[k];
    }
    ev->caller = caller;
    if (hkt_unlikely(g & (HKT_G_STR | HKT_G_BID))) {
      if (read_strings(r, sc, g & HKT_G_STR, g & HKT_G_BID, ev)) bad = HKT_S_STR + 1;
      if (!bad) i++;
      break;   /* the string lives in r->str until the next chunk */
    }
    if (hkt_unlikely(bad)) break;
    i++;
    go_on = 1;
  } while (0);
  r->s[HKT_S_HEAD].p = hp;
  r->s[HKT_S_FLAGS].p = fp;
  r->s[HKT_S_TID].p = tp;
  r->s[HKT_S_TIME].p = mp;
  r->s[HKT_S_CLS].p = cp;
  r->s[HKT_S_PTR].p = pp;
  r->s[HKT_S_SIZE].p = zp;
  r->s[HKT_S_AUX].p = ap;
  r->s[HKT_S_CALLER].p = lp;
  r->s[HKT_S_SIZE_LO].p = slp;
  r->s[HKT_S_FREE_LO].p = flp;
  r->s[HKT_S_FREE_HI].p = fhp;
  r->m.prev_tid = tid;
  *ip = i;
  why->bad = bad;
  why->bad_event = bad_event;
  why->nomem = nomem;
  return go_on;
}

static uint32_t decode_chunk_v2(hkt_reader *r, hkt_event *out, uint32_t max) {
  if (max > r->left) max = r->left;
  const int lean = (r->skip & (HKT_SKIP_TIME | HKT_SKIP_CALLER)) == (HKT_SKIP_TIME | HKT_SKIP_CALLER);
  uint32_t (*fast)(hkt_reader *, hkt_event *, uint32_t, uint32_t) =
      r->fast_isa ? (lean ? decode_fast_v2_isa_lean : decode_fast_v2_isa)
                  : (lean ? decode_fast_v2_base_lean : decode_fast_v2_base);
  uint32_t i = 0;
  v2_stop why = { 0, 0, 0 };
  while (i < max) {
    i = fast(r, out, i, max);
    if (i == max || !decode_general_v2(r, out, &i, &why)) break;
  }
  end_chunk(r, r->next_seq, i, why.nomem, why.bad_event, why.bad);
  return i;
}

/* Decode the next events into out[0..max) (max >= 1): how many, or 0 at
 * the end, or the error (after the events decoded before it were handed
 * out). */
static int decode_into(hkt_reader *r, hkt_event *out, uint32_t max) {
  for (;;) {
    if (r->err) return r->err;
    if (r->in_frame) {
      if (r->left) {
        uint32_t n = r->hdr.version == 1 ? decode_chunk_v1(r, out, max) : decode_chunk_v2(r, out, max);
        if (n) return (int)n;
        continue;
      }
      HKT_TRY(finish_events(r));
    }
    if (r->complete) return 0;
    int e = read_frame(r);
    if (e <= 0) return e;
    const uint8_t *p = r->content.p;
    if (r->content.len >= 4 && !memcmp(p, HKT_MAGIC_EVENTS, 4)) {
      HKT_TRY(parse_events(r));
    } else if (r->content.len >= 4 && !memcmp(p, HKT_MAGIC_END, 4)) {
      hkt_cur c = { p + 4, p + r->content.len, 0 };
      uint64_t total = hkt_get_varint(&c);
      if (c.bad) return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "end frame too short");
      if (total != r->next_seq)
        return set_err(r, HKT_ERR_SEQUENCE, r->frame_off, "end frame counts %llu events, the trace has %llu",
                       (unsigned long long)total, (unsigned long long)r->next_seq);
      uint64_t end_off = r->frame_off;
      e = read_frame(r);   /* nothing may follow the end frame */
      if (e < 0) return e;
      if (e > 0) return set_err(r, HKT_ERR_CORRUPT, end_off, "data after the end frame");
      r->complete = 1;
      return 0;
    } else {
      return set_err(r, HKT_ERR_CORRUPT, r->frame_off, "frame of unknown type");
    }
  }
}

/* Make sure decoded events wait in r->batch: 1, or as decode_into. */
static int fill(hkt_reader *r) {
  if (r->bpos < r->bn) return 1;
  int n = decode_into(r, r->batch, HKT_BATCH);
  if (n <= 0) return n;
  r->bpos = 0;
  r->bn = (uint32_t)n;
  return 1;
}

int hkt_reader_next(hkt_reader *r, hkt_event *ev) {
  if (!r || !ev) return HKT_ERR_ARG;
  if (hkt_unlikely(r->bpos == r->bn)) {
    int e = fill(r);
    if (e != 1) return e;
  }
  *ev = r->batch[r->bpos++];
  return 1;
}

int hkt_reader_batch(hkt_reader *r, const hkt_event **evs) {
  if (!r || !evs) return HKT_ERR_ARG;
  int e = fill(r);
  if (e != 1) return e;
  *evs = r->batch + r->bpos;
  int n = (int)(r->bn - r->bpos);
  r->bpos = r->bn;
  return n;
}

int hkt_reader_batch_into(hkt_reader *r, hkt_event *out, unsigned max) {
  if (!r || !out || !max) return HKT_ERR_ARG;
  if (max > HKT_BATCH) max = HKT_BATCH;
  if (r->bpos < r->bn) {   /* what hkt_reader_next left of a chunk */
    uint32_t n = r->bn - r->bpos < max ? r->bn - r->bpos : max;
    memcpy(out, r->batch + r->bpos, n * sizeof *out);
    r->bpos += n;
    return (int)n;
  }
  return decode_into(r, out, max);
}

int hkt_reader_skip(hkt_reader *r, unsigned fields) {
  if (!r || (fields & ~(HKT_SKIP_TIME | HKT_SKIP_CALLER)) || r->err || r->next_seq || r->in_frame) return HKT_ERR_ARG;
  r->skip = fields;
  return 0;
}

/* The fast path needs AVX2, BMI and BMI2 and POPCNT (HAKMEM_TRACE_ISA=base: never). */
static int cpu_has_fast_isa(void) {
  if (hkt_isa_base()) return 0;
  __builtin_cpu_init();   /* the reader may run before constructors (in a preloaded library) */
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2") &&
         __builtin_cpu_supports("popcnt");
}

int hkt_reader_open(hkt_reader **out, const char *path) {
  if (!out || !path) return HKT_ERR_ARG;
  *out = NULL;
  last_open_msg[0] = 0;
  hkt_reader *r = hkt_mem_alloc(sizeof *r);
  size_t plen = strlen(path);
  if (r) r->path = hkt_mem_alloc(plen + 1);
  if (!r || !r->path) {
    hkt_mem_free(r);
    snprintf(last_open_msg, sizeof last_open_msg, "%s: out of memory", path);
    return HKT_ERR_NOMEM;
  }
  memcpy(r->path, path, plen + 1);
  *out = r;
  int e = 0;
  r->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (r->fd < 0) {
    int saved = errno;
    snprintf(r->msg, sizeof r->msg, "%s: %s", path, strerror(saved));
    e = r->err = HKT_ERR_IO;
    errno = saved;
  } else {
    r->dctx = hkt_zstd_dctx();
    r->in = hkt_mem_alloc(IN_CAP);
    r->batch = hkt_mem_alloc(HKT_BATCH * sizeof *r->batch);
    r->fast_isa = cpu_has_fast_isa();
    if (!r->dctx || !r->in || !r->batch) e = set_err(r, HKT_ERR_NOMEM, 0, "out of memory");
    else {
      ZSTD_DCtx_setParameter(r->dctx, ZSTD_d_windowLogMax, 26);
      e = read_frame(r);
      if (e == 0) e = set_err(r, HKT_ERR_NOT_TRACE, 0, "empty file, not a hakmem trace");
      else if (e > 0) e = parse_header(r);
      if (e == HKT_ERR_TRUNCATED)
        snprintf(r->msg, sizeof r->msg, "%s: offset 0: the file ends inside the header frame", path);
    }
  }
  if (HKT_IS_ERR(e)) {
    int saved = errno;
    snprintf(last_open_msg, sizeof last_open_msg, "%s", r->msg);
    errno = saved;
    return e;
  }
  return 0;
}

const hkt_header *hkt_reader_header(const hkt_reader *r) { return r ? &r->hdr : NULL; }
const char *hkt_reader_errmsg(const hkt_reader *r) {
  if (!r) return last_open_msg;
  return r->err ? r->msg : "";
}
uint64_t hkt_reader_offset(const hkt_reader *r) { return r ? r->whole_off : 0; }
uint64_t hkt_reader_frames(const hkt_reader *r) { return r ? r->frames : 0; }
int hkt_reader_complete(const hkt_reader *r) { return r ? r->complete : 0; }
uint64_t hkt_reader_data_end(const hkt_reader *r) { return r->data_end; }
uint64_t hkt_reader_data_events(const hkt_reader *r) { return r->data_events; }

int hkt_reader_stack(const hkt_reader *r, uint32_t id, const uint64_t **frames, uint32_t *n) {
  if (!r || !id || !frames || !n || !r->stab_cap) return HKT_ERR_ARG;
  uint32_t h = (id * 0x9e3779b1u) & (r->stab_cap - 1);
  while (r->stab[h].id) {
    if (r->stab[h].id == id) {
      *frames = r->sframes + r->stab[h].off;
      *n = r->stab[h].n;
      return 0;
    }
    h = (h + 1) & (r->stab_cap - 1);
  }
  return HKT_ERR_ARG;
}

void hkt_reader_close(hkt_reader *r) {
  if (!r) return;
  job_free(r->job);   /* first: a helper may be reading the file */
  if (r->fd >= 0) close(r->fd);
  ZSTD_freeDCtx(r->dctx);
  hkt_mem_free(r->in);
  hkt_mem_free(r->batch);
  hkt_buf_release(&r->content);
  hkt_buf_release(&r->hstore);
  hkt_mem_free(r->mods);
  hkt_mem_free(r->callers);
  hkt_mem_free(r->aptr);
  hkt_mem_free(r->acls);
  hkt_mem_free(r->m.rings.ent);
  hkt_live_release(&r->m.live);
  hkt_mem_free(r->stab);
  hkt_mem_free(r->sframes);
  hkt_mem_free(r->path);
  hkt_mem_free(r);
}
