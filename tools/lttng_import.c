/* lttng_import.c — hkl_import(): an LTTng CTF trace of the `hakmem`
 * tracepoints (trace/lttng/hakmem_tp.h) back into a .hkt.zst, for
 * `hakmem import` (cmd_import.c) and `hakmem record --lttng`.
 *
 * A libbabeltrace2 graph: source.ctf.fs -> filter.utils.muxer -> a sink
 * class of our own. The muxer hands events over in timestamp order; seq was
 * stamped just before the timestamp, on whatever CPU, so the two orders
 * differ a little: the sink puts events back in seq order through a min-heap
 * bounded by a window. Memory is the window, never the trace.
 *
 * Nothing is lost silently: a seq that never comes is a lost event (LTTng
 * discarded it, or the program died inside the tracepoint); the trace is
 * cut before it, marked incomplete, and the count is reported along with
 * what LTTng itself reported as discarded. */
#include <babeltrace2/babeltrace.h>
#include <dirent.h>
#include <stdarg.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hakmem/trace.h"
#include "lttng_session.h"


/* ---- what each hakmem:* event holds (mirror of hakmem_tp.h) -------------- */

enum hkl_slot {
  SL_NONE, SL_SEQ, SL_TID, SL_CLS, SL_PTR, SL_SIZE, SL_FN, SL_AUX, SL_AUX2, SL_AUX3,
  SL_STR, SL_BID, SL_KIND,
  /* hakmem:header and hakmem:header_module */
  SL_H_VERSION, SL_H_PID, SL_H_PPID, SL_H_START, SL_H_ARENA, SL_H_FIRST_SEQ, SL_H_NMOD,
  SL_H_CLASSES, SL_H_CMDLINE, SL_H_CONFIG, SL_M_INDEX, SL_M_BASE, SL_M_SIZE,
};

#define KIND_HEADER (-2)
#define KIND_MODULE (-3)
#define KIND_OTHER  (-1)   /* not a hakmem event */
#define KIND_UNKNOWN (-4)  /* hakmem:* this build does not know */

#define KIND_GENERIC 0xffff  /* hakmem:event: the kind is a field */

/* The name each kind gives its fn/aux/aux2/aux3 slots (NULL: the generic
 * name); ptr, size, cls, seq, tid keep theirs everywhere. */
static const struct hkl_kind_map {
  const char *name;
  int kind;
  const char *fn, *aux, *aux2, *aux3, *str;
} hkl_kinds[] = {
  { "malloc", HKT_EV_MALLOC, NULL, NULL, "err", NULL, NULL },
  { "calloc", HKT_EV_CALLOC, NULL, "count", "err", NULL, NULL },
  { "realloc", HKT_EV_REALLOC, NULL, "old_ptr", "err", NULL, NULL },
  { "aligned", HKT_EV_ALIGNED, NULL, "align", "err", NULL, NULL },
  { "free", HKT_EV_FREE, NULL, NULL, NULL, NULL, NULL },
  { "thread_start", HKT_EV_THREAD_START, NULL, "os_tid", NULL, NULL, NULL },
  { "thread_exit", HKT_EV_THREAD_EXIT, NULL, "os_tid", NULL, NULL, NULL },
  { "ss_register", HKT_EV_SS_REGISTER, NULL, "owner", "ss_id", "live_blocks", NULL },
  { "ss_unregister", HKT_EV_SS_UNREGISTER, NULL, "owner", "ss_id", "live_blocks", NULL },
  { "ss_empty", HKT_EV_SS_EMPTY, NULL, NULL, "ss_id", NULL, NULL },
  { "ss_adopt", HKT_EV_SS_ADOPT, "from_cache", "owner", "ss_id", NULL, NULL },
  { "ss_abandon", HKT_EV_SS_ABANDON, NULL, "live_blocks", "ss_id", NULL, NULL },
  { "remote_push", HKT_EV_REMOTE_PUSH, NULL, "ss_base", "owner", NULL, NULL },
  { "remote_drain", HKT_EV_REMOTE_DRAIN, NULL, "ss_base", NULL, NULL, NULL },
  { "cache_refill", HKT_EV_CACHE_REFILL, NULL, "ss_base", "drained", NULL, NULL },
  { "cache_flush", HKT_EV_CACHE_FLUSH, NULL, NULL, NULL, NULL, NULL },
  { "large_map", HKT_EV_LARGE_MAP, NULL, NULL, NULL, NULL, NULL },
  { "large_unmap", HKT_EV_LARGE_UNMAP, NULL, NULL, NULL, NULL, NULL },
  { "module_load", HKT_EV_MODULE_LOAD, NULL, NULL, NULL, NULL, "path" },
  { "mark", HKT_EV_MARK, NULL, NULL, NULL, NULL, "label" },
  { "detection", HKT_EV_DETECTION, "detect", "ss_base", "extra", NULL, NULL },
  { "end", HKT_EV_END, "how", "status", NULL, NULL, NULL },
  { "event", KIND_GENERIC, NULL, NULL, NULL, NULL, NULL },
};

static int hkl_is(const char *a, const char *named, const char *generic) {
  return !strcmp(a, named ? named : generic);
}

static enum hkl_slot hkl_event_slot(const struct hkl_kind_map *k, const char *f) {
  if (!strcmp(f, "seq")) return SL_SEQ;
  if (!strcmp(f, "tid")) return SL_TID;
  if (!strcmp(f, "cls")) return SL_CLS;
  if (!strcmp(f, "ptr")) return SL_PTR;
  if (!strcmp(f, "size")) return SL_SIZE;
  if (!strcmp(f, "build_id")) return SL_BID;
  if (k->kind == KIND_GENERIC && !strcmp(f, "kind")) return SL_KIND;
  if (hkl_is(f, k->fn, "fn")) return SL_FN;
  if (hkl_is(f, k->aux, "aux")) return SL_AUX;
  if (hkl_is(f, k->aux2, "aux2")) return SL_AUX2;
  if (hkl_is(f, k->aux3, "aux3")) return SL_AUX3;
  if (k->str && !strcmp(f, k->str)) return SL_STR;
  return SL_NONE;
}

static enum hkl_slot hkl_header_slot(int kind, const char *f) {
  static const struct { int kind; const char *name; enum hkl_slot slot; } t[] = {
    { KIND_HEADER, "version", SL_H_VERSION }, { KIND_HEADER, "pid", SL_H_PID },
    { KIND_HEADER, "ppid", SL_H_PPID }, { KIND_HEADER, "start_realtime_ns", SL_H_START },
    { KIND_HEADER, "arena_base", SL_H_ARENA }, { KIND_HEADER, "first_seq", SL_H_FIRST_SEQ },
    { KIND_HEADER, "num_modules", SL_H_NMOD }, { KIND_HEADER, "class_size", SL_H_CLASSES },
    { KIND_HEADER, "cmdline", SL_H_CMDLINE }, { KIND_HEADER, "config", SL_H_CONFIG },
    { KIND_MODULE, "index", SL_M_INDEX }, { KIND_MODULE, "base", SL_M_BASE },
    { KIND_MODULE, "size", SL_M_SIZE }, { KIND_MODULE, "build_id", SL_BID },
    { KIND_MODULE, "path", SL_STR },
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    if (t[i].kind == kind && !strcmp(t[i].name, f)) return t[i].slot;
  return SL_NONE;
}

/* Per event class, resolved once: the kind and the slot of each member. */
#define HKL_MAX_MEMBERS 16
typedef struct hkl_class {
  const bt_event_class *ec;
  int kind;
  int seq32;                /* compact layout: seq holds its low 32 bits */
  int cls8;                 /* compact layout: cls in 8 bits, 255 = none */
  uint32_t n;
  uint8_t slot[HKL_MAX_MEMBERS];
  char name[64];
} hkl_class;

/* Per stream class: where vpid and ip sit in the common context. */
typedef struct hkl_sclass {
  const bt_stream_class *sc;
  int vpid, ip;             /* member index, -1 if absent */
} hkl_sclass;

/* An event waiting for its turn, owning copies of its strings. */
typedef struct hkl_pending {
  hkt_event ev;
  char *str;
  uint8_t *bid;
} hkl_pending;

typedef struct hkl_importer {
  const char *dir, *out;
  const hkl_import_opts *o;
  hkl_import_result *r;
  char part[4200];
  int err;                  /* first error (negative hkt_err), stops the graph */
  int gap;                  /* a seq is missing: writing stopped before it */
  int gap_window;           /* ... declared when the reorder window filled up */
  hkl_class classes[64], class_scratch;     /* scratch: when the cache is full */
  uint32_t nclasses;
  hkl_sclass sclasses[16], sclass_scratch;
  uint32_t nsclasses;
  char other_name[128];     /* an example of a foreign event, for the message */
  /* header */
  int have_header, pid_from_ctx_missing, several_pids;
  uint32_t headers_seen;
  hkt_header h;
  hkt_module *mods;
  uint32_t mods_seen;
  char *cmdline, *config;
  int64_t t0;               /* ns from origin of the header */
  /* ordering */
  hkt_writer *w;
  uint64_t next;            /* the seq the writer wants */
  uint64_t seq_ref;         /* highest seq seen: extends 32-bit ones */
  uint64_t last_time;
  hkl_pending *heap;
  size_t nheap, capheap, window;
  int saw_end;
  uint32_t last_tid;
  bt_message_iterator *it;
} hkl_importer;

static void hkl_fail(hkl_importer *im, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void hkl_fail(hkl_importer *im, int err, const char *fmt, ...) {
  if (im->err) return;
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "hakmem %s: %s: ", im->o->cmd, im->dir);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  im->err = err;
}

/* ---- reading fields ------------------------------------------------------ */

static uint64_t hkl_u64(const bt_field *f) {
  switch (bt_field_get_class_type(f)) {
  case BT_FIELD_CLASS_TYPE_UNSIGNED_INTEGER:
  case BT_FIELD_CLASS_TYPE_UNSIGNED_ENUMERATION:
    return bt_field_integer_unsigned_get_value(f);
  case BT_FIELD_CLASS_TYPE_SIGNED_INTEGER:
  case BT_FIELD_CLASS_TYPE_SIGNED_ENUMERATION:
    return (uint64_t)bt_field_integer_signed_get_value(f);
  default:
    return 0;
  }
}

static const char *hkl_str(const bt_field *f) {
  return bt_field_get_class_type(f) == BT_FIELD_CLASS_TYPE_STRING ? bt_field_string_get_value(f) : "";
}

/* A byte array (build-id) into buf; returns its length. */
static uint32_t hkl_bytes(const bt_field *f, uint8_t *buf, uint32_t cap) {
  bt_field_class_type t = bt_field_get_class_type(f);
  if (!bt_field_class_type_is(t, BT_FIELD_CLASS_TYPE_ARRAY)) return 0;
  uint64_t n = bt_field_array_get_length(f);
  if (n > cap) n = cap;
  for (uint64_t i = 0; i < n; i++)
    buf[i] = (uint8_t)hkl_u64(bt_field_array_borrow_element_field_by_index_const(f, i));
  return (uint32_t)n;
}

static hkl_class *hkl_class_of(hkl_importer *im, const bt_event_class *ec) {
  for (uint32_t i = 0; i < im->nclasses; i++)
    if (im->classes[i].ec == ec) return &im->classes[i];
  hkl_class *c = im->nclasses < sizeof im->classes / sizeof im->classes[0]
                     ? &im->classes[im->nclasses++] : &im->class_scratch;
  memset(c, 0, sizeof *c);
  c->ec = ec;
  const char *name = bt_event_class_get_name(ec);
  snprintf(c->name, sizeof c->name, "%s", name ? name : "?");
  c->kind = KIND_OTHER;
  if (!name || strncmp(name, "hakmem:", 7)) return c;
  const char *k = name + 7;
  const struct hkl_kind_map *km = NULL;
  if (!strcmp(k, "header")) c->kind = KIND_HEADER;
  else if (!strcmp(k, "header_module")) c->kind = KIND_MODULE;
  else {
    c->kind = KIND_UNKNOWN;
    for (size_t i = 0; i < sizeof hkl_kinds / sizeof hkl_kinds[0]; i++)
      if (!strcmp(hkl_kinds[i].name, k)) { km = &hkl_kinds[i]; c->kind = km->kind; }
  }
  const bt_field_class *fc = bt_event_class_borrow_payload_field_class_const(ec);
  uint64_t n = fc ? bt_field_class_structure_get_member_count(fc) : 0;
  c->n = n < HKL_MAX_MEMBERS ? (uint32_t)n : HKL_MAX_MEMBERS;
  for (uint32_t i = 0; i < c->n; i++) {
    const char *f = bt_field_class_structure_member_get_name(
        bt_field_class_structure_borrow_member_by_index_const(fc, i));
    const bt_field_class *mfc = bt_field_class_structure_member_borrow_field_class_const(
        bt_field_class_structure_borrow_member_by_index_const(fc, i));
    c->slot[i] = km ? hkl_event_slot(km, f) : c->kind < KIND_OTHER ? hkl_header_slot(c->kind, f) : SL_NONE;
    if (c->slot[i] == SL_SEQ && bt_field_class_integer_get_field_value_range(mfc) < 64) c->seq32 = 1;
    if (c->slot[i] == SL_CLS && bt_field_class_integer_get_field_value_range(mfc) == 8) c->cls8 = 1;
  }
  return c;
}

static hkl_sclass *hkl_sclass_of(hkl_importer *im, const bt_stream_class *sc) {
  for (uint32_t i = 0; i < im->nsclasses; i++)
    if (im->sclasses[i].sc == sc) return &im->sclasses[i];
  hkl_sclass *s = im->nsclasses < sizeof im->sclasses / sizeof im->sclasses[0]
                      ? &im->sclasses[im->nsclasses++] : &im->sclass_scratch;
  s->sc = sc;
  s->vpid = s->ip = -1;
  const bt_field_class *fc = bt_stream_class_borrow_event_common_context_field_class_const(sc);
  uint64_t n = fc ? bt_field_class_structure_get_member_count(fc) : 0;
  for (uint64_t i = 0; i < n; i++) {
    const char *f = bt_field_class_structure_member_get_name(
        bt_field_class_structure_borrow_member_by_index_const(fc, i));
    if (!strcmp(f, "vpid")) s->vpid = (int)i;
    if (!strcmp(f, "ip")) s->ip = (int)i;
  }
  return s;
}

/* The full seq whose low 32 bits are `low`, nearest to ref: events are in
 * seq order give or take the reorder window, far less than 2^31. */
static uint64_t hkl_extend(uint64_t ref, uint64_t low) {
  uint64_t s = (ref & ~0xffffffffull) | (low & 0xffffffffull);
  if (s + 0x80000000ull < ref) s += 1ull << 32;
  else if (s > ref + 0x80000000ull && s >= (1ull << 32)) s -= 1ull << 32;
  return s;
}

/* ---- ordered output ------------------------------------------------------ */

static int hkl_less(const hkl_pending *a, const hkl_pending *b) { return a->ev.seq < b->ev.seq; }

static void hkl_heap_push(hkl_importer *im, const hkl_pending *p) {
  size_t i = im->nheap++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (!hkl_less(p, &im->heap[up])) break;
    im->heap[i] = im->heap[up];
    i = up;
  }
  im->heap[i] = *p;
}

static hkl_pending hkl_heap_pop(hkl_importer *im) {
  hkl_pending top = im->heap[0], last = im->heap[--im->nheap];
  size_t i = 0, n = im->nheap;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= n) break;
    if (c + 1 < n && hkl_less(&im->heap[c + 1], &im->heap[c])) c++;
    if (!hkl_less(&im->heap[c], &last)) break;
    im->heap[i] = im->heap[c];
    i = c;
  }
  if (n) im->heap[i] = last;
  return top;
}

static void hkl_put(hkl_importer *im, const hkt_event *ev) {
  int rc = hkt_writer_put(im->w, ev);
  if (HKT_IS_ERR(rc)) {
    hkl_fail(im, rc, "%s: writing seq %llu: %s", im->part, (unsigned long long)ev->seq,
             hkt_strerror(rc));
    return;
  }
  im->next = ev->seq + 1;
  im->r->events++;
  im->last_time = ev->time_ns;
  im->last_tid = ev->tid;
  if (ev->kind == HKT_EV_END) im->saw_end = 1;
}

/* Write what is due: the heap's top while it is the next seq. */
static void hkl_drain(hkl_importer *im) {
  while (!im->err && !im->gap && im->nheap && im->heap[0].ev.seq == im->next) {
    hkl_pending p = hkl_heap_pop(im);
    hkl_put(im, &p.ev);
    free(p.str);
    free(p.bid);
  }
}

/* seq im->next will never come: stop writing there. */
static void hkl_gap(hkl_importer *im, uint64_t upto) {
  if (im->gap) return;
  im->gap = 1;
  im->r->missing = upto - im->next;
}

static void hkl_open_writer(hkl_importer *im) {
  im->h.modules = im->mods;
  im->h.num_modules = im->mods_seen;
  im->h.cmdline = im->cmdline ? im->cmdline : "";
  im->h.config = im->config ? im->config : "";
  im->h.clock = "lttng";
  int rc = hkt_writer_open(&im->w, im->part, &im->h);
  if (HKT_IS_ERR(rc)) {
    hkl_fail(im, rc, "%s: %s", im->part, hkt_strerror(rc));
    im->w = NULL;
  }
}

static void hkl_event(hkl_importer *im, const hkt_event *ev) {
  if (ev->seq < im->next) {
    hkl_fail(im, HKT_ERR_SEQUENCE, "seq %llu appears twice (two processes in one trace "
             "without the vpid context?)", (unsigned long long)ev->seq);
    return;
  }
  if (im->gap) return;  /* after a loss nothing more is written, only counted */
  if (im->w && ev->seq == im->next && (!im->nheap || im->heap[0].ev.seq > ev->seq)) {
    hkl_put(im, ev);
    hkl_drain(im);
    return;
  }
  if (im->nheap == im->capheap) {
    if (im->nheap >= im->window) {
      /* The next seq did not arrive within the window: it is lost (or so
       * late that the window must grow: --window). */
      if (!im->w) {
        hkl_fail(im, HKT_ERR_NOT_TRACE, "no hakmem:header within the first %zu events "
                 "(was the session started after the program?)", im->window);
        return;
      }
      hkl_gap(im, im->heap[0].ev.seq);
      im->gap_window = 1;
      return;
    }
    size_t cap = im->capheap ? im->capheap * 2 : 4096;
    if (cap > im->window) cap = im->window;
    hkl_pending *nh = realloc(im->heap, cap * sizeof *nh);
    if (!nh) { hkl_fail(im, HKT_ERR_NOMEM, "out of memory (reorder window)"); return; }
    im->heap = nh;
    im->capheap = cap;
  }
  hkl_pending p = { *ev, NULL, NULL };
  if (ev->str) { p.str = strdup(ev->str); p.ev.str = p.str; }
  if (ev->bid_len) {
    p.bid = malloc(ev->bid_len);
    if (p.bid) memcpy(p.bid, ev->bid, ev->bid_len);
    p.ev.bid = p.bid;
  }
  hkl_heap_push(im, &p);
}

/* ---- messages ------------------------------------------------------------ */

static void hkl_header_event(hkl_importer *im, const hkl_class *c, const bt_field *pl, int64_t t) {
  if (im->have_header) return;
  im->have_header = 1;
  im->t0 = t;
  hkt_header *h = &im->h;
  for (uint32_t i = 0; i < c->n; i++) {
    const bt_field *f = bt_field_structure_borrow_member_field_by_index_const(pl, i);
    switch (c->slot[i]) {
    case SL_H_VERSION: h->version = (uint32_t)hkl_u64(f); break;
    case SL_H_PID: h->pid = (uint32_t)hkl_u64(f); break;
    case SL_H_PPID: h->ppid = (uint32_t)hkl_u64(f); break;
    case SL_H_START: h->start_realtime_ns = hkl_u64(f); break;
    case SL_H_ARENA: h->arena_base = hkl_u64(f); break;
    case SL_H_FIRST_SEQ: im->next = hkl_u64(f); break;
    case SL_H_NMOD: {
      uint64_t n = hkl_u64(f);
      h->num_modules = n > 4096 ? 4096 : (uint32_t)n;
      im->mods = calloc(h->num_modules ? h->num_modules : 1, sizeof *im->mods);
      if (!im->mods) hkl_fail(im, HKT_ERR_NOMEM, "out of memory");
      break;
    }
    case SL_H_CLASSES: {
      uint64_t n = bt_field_array_get_length(f);
      h->num_classes = n > 64 ? 64 : (uint32_t)n;
      for (uint32_t k = 0; k < h->num_classes; k++)
        h->class_size[k] = (uint32_t)hkl_u64(bt_field_array_borrow_element_field_by_index_const(f, k));
      break;
    }
    case SL_H_CMDLINE: im->cmdline = strdup(hkl_str(f)); break;
    case SL_H_CONFIG: im->config = strdup(hkl_str(f)); break;
    default: break;
    }
  }
  if (im->next) {
    /* Events before the header were never traced. */
    hkl_fail(im, HKT_ERR_SEQUENCE, "the trace starts at seq %llu, not 0: events before "
             "it were not traced", (unsigned long long)im->next);
  }
}

static void hkl_module_event(hkl_importer *im, const hkl_class *c, const bt_field *pl) {
  if (!im->have_header || !im->mods || im->mods_seen >= im->h.num_modules) return;
  hkt_module *m = &im->mods[im->mods_seen];
  for (uint32_t i = 0; i < c->n; i++) {
    const bt_field *f = bt_field_structure_borrow_member_field_by_index_const(pl, i);
    switch (c->slot[i]) {
    case SL_M_BASE: m->base = hkl_u64(f); break;
    case SL_M_SIZE: m->size = hkl_u64(f); break;
    case SL_BID: m->build_id_len = hkl_bytes(f, m->build_id, sizeof m->build_id); break;
    case SL_STR: m->path = strdup(hkl_str(f)); break;
    default: break;
    }
  }
  if (!m->path) m->path = strdup("");
  im->mods_seen++;
}

static void hkl_event_msg(hkl_importer *im, const bt_message *msg) {
  const bt_event *e = bt_message_event_borrow_event_const(msg);
  hkl_class *c = hkl_class_of(im, bt_event_borrow_class_const(e));
  if (c->kind == KIND_OTHER) {
    if (!im->r->other_events++) snprintf(im->other_name, sizeof im->other_name, "%s", c->name);
    return;
  }
  im->r->ctf_events++;
  if (c->kind == KIND_UNKNOWN) {
    hkl_fail(im, HKT_ERR_VERSION, "%s: an event this hakmem does not know", c->name);
    return;
  }
  /* Which process: the vpid context, when recorded. */
  const bt_field *ctx = bt_event_borrow_common_context_field_const(e);
  hkl_sclass *sc = hkl_sclass_of(im, bt_stream_borrow_class_const(bt_event_borrow_stream_const(e)));
  int64_t vpid = -1;
  if (ctx && sc->vpid >= 0)
    vpid = (int64_t)hkl_u64(bt_field_structure_borrow_member_field_by_index_const(ctx, (uint64_t)sc->vpid));
  const bt_field *pl = bt_event_borrow_payload_field_const(e);
  int64_t t = 0;
  const bt_clock_snapshot *cs = bt_message_event_borrow_default_clock_snapshot_const(msg);
  if (cs && bt_clock_snapshot_get_ns_from_origin(cs, &t) != BT_CLOCK_SNAPSHOT_GET_NS_FROM_ORIGIN_STATUS_OK)
    t = 0;

  if (c->kind == KIND_HEADER) {
    im->headers_seen++;
    uint32_t pid = 0;
    for (uint32_t i = 0; i < c->n; i++)
      if (c->slot[i] == SL_H_PID)
        pid = (uint32_t)hkl_u64(bt_field_structure_borrow_member_field_by_index_const(pl, i));
    if (vpid < 0 && im->headers_seen > 1) {
      hkl_fail(im, HKT_ERR_ARG, "several processes in the trace and no vpid context to tell "
               "them apart (lttng add-context -u -t vpid)");
      return;
    }
    if (!im->r->pid && (!im->o->pid || (uint32_t)im->o->pid == pid)) im->r->pid = pid;
    if (pid != im->r->pid) { im->several_pids = 1; return; }
    hkl_header_event(im, c, pl, t);
    return;
  }
  if (vpid >= 0 && (!im->r->pid || (uint32_t)vpid != im->r->pid)) {
    im->r->other_pid_events++;
    return;
  }
  if (c->kind == KIND_MODULE) {
    hkl_module_event(im, c, pl);
    return;
  }
  if (!im->have_header && !im->nheap && !im->r->pid && vpid >= 0) {
    /* hakmem events of a process whose header we never saw */
    im->r->other_pid_events++;
    return;
  }
  hkt_event ev;
  uint8_t bid[64];
  memset(&ev, 0, sizeof ev);
  ev.kind = (uint16_t)c->kind;
  ev.cls = HKT_NO_CLASS;
  for (uint32_t i = 0; i < c->n; i++) {
    const bt_field *f = bt_field_structure_borrow_member_field_by_index_const(pl, i);
    switch (c->slot[i]) {
    case SL_SEQ: ev.seq = c->seq32 ? hkl_extend(im->seq_ref, hkl_u64(f)) : hkl_u64(f); break;
    case SL_KIND: ev.kind = (uint16_t)hkl_u64(f); break;
    case SL_TID: ev.tid = (uint32_t)hkl_u64(f); break;
    case SL_CLS:
      ev.cls = (uint32_t)hkl_u64(f);
      if (c->cls8 && ev.cls == 0xff) ev.cls = HKT_NO_CLASS;
      break;
    case SL_PTR: ev.ptr = hkl_u64(f); break;
    case SL_SIZE: ev.size = hkl_u64(f); break;
    case SL_FN: ev.fn = (uint16_t)hkl_u64(f); break;
    case SL_AUX: ev.aux = hkl_u64(f); break;
    case SL_AUX2: ev.aux2 = hkl_u64(f); break;
    case SL_AUX3: ev.aux3 = hkl_u64(f); break;
    case SL_STR: ev.str = hkl_str(f); break;
    case SL_BID: ev.bid_len = hkl_bytes(f, bid, sizeof bid); ev.bid = bid; break;
    default: break;
    }
  }
  if (ev.seq > im->seq_ref) im->seq_ref = ev.seq;
  if (ctx && sc->ip >= 0)
    ev.caller = hkl_u64(bt_field_structure_borrow_member_field_by_index_const(ctx, (uint64_t)sc->ip));
  ev.time_ns = im->have_header && t > im->t0 ? (uint64_t)(t - im->t0) : 0;
  /* The header is whole once all its modules came: then the file opens. */
  if (!im->w && im->have_header && !im->err && im->mods_seen >= im->h.num_modules) {
    hkl_open_writer(im);
    hkl_drain(im);
  }
  if (!im->err) hkl_event(im, &ev);
}

static void hkl_message(hkl_importer *im, const bt_message *msg) {
  uint64_t n = 0;
  switch (bt_message_get_type(msg)) {
  case BT_MESSAGE_TYPE_EVENT:
    hkl_event_msg(im, msg);
    break;
  case BT_MESSAGE_TYPE_DISCARDED_EVENTS:
    if (bt_message_discarded_events_get_count(msg, &n) != BT_PROPERTY_AVAILABILITY_AVAILABLE) n = 1;
    im->r->discarded += n;
    break;
  case BT_MESSAGE_TYPE_DISCARDED_PACKETS:
    if (bt_message_discarded_packets_get_count(msg, &n) != BT_PROPERTY_AVAILABILITY_AVAILABLE) n = 1;
    im->r->discarded += n;  /* whole packets: counted as at least one event each */
    break;
  default:
    break;
  }
}

/* ---- our sink component class ------------------------------------------- */

static bt_component_class_initialize_method_status
hkl_sink_init(bt_self_component_sink *self, bt_self_component_sink_configuration *conf,
              const bt_value *params, void *data) {
  (void)conf; (void)params;
  bt_self_component_set_data(bt_self_component_sink_as_self_component(self), data);
  if (bt_self_component_sink_add_input_port(self, "in", NULL, NULL) != BT_SELF_COMPONENT_ADD_PORT_STATUS_OK)
    return BT_COMPONENT_CLASS_INITIALIZE_METHOD_STATUS_ERROR;
  return BT_COMPONENT_CLASS_INITIALIZE_METHOD_STATUS_OK;
}

static bt_component_class_sink_graph_is_configured_method_status
hkl_sink_configured(bt_self_component_sink *self) {
  hkl_importer *im = bt_self_component_get_data(bt_self_component_sink_as_self_component(self));
  bt_self_component_port_input *port = bt_self_component_sink_borrow_input_port_by_name(self, "in");
  if (bt_message_iterator_create_from_sink_component(self, port, &im->it) !=
      BT_MESSAGE_ITERATOR_CREATE_FROM_SINK_COMPONENT_STATUS_OK)
    return BT_COMPONENT_CLASS_SINK_GRAPH_IS_CONFIGURED_METHOD_STATUS_ERROR;
  return BT_COMPONENT_CLASS_SINK_GRAPH_IS_CONFIGURED_METHOD_STATUS_OK;
}

static bt_component_class_sink_consume_method_status hkl_sink_consume(bt_self_component_sink *self) {
  hkl_importer *im = bt_self_component_get_data(bt_self_component_sink_as_self_component(self));
  bt_message_array_const msgs;
  uint64_t count = 0;
  switch (bt_message_iterator_next(im->it, &msgs, &count)) {
  case BT_MESSAGE_ITERATOR_NEXT_STATUS_OK: break;
  case BT_MESSAGE_ITERATOR_NEXT_STATUS_END:
    bt_message_iterator_put_ref(im->it);
    im->it = NULL;
    return BT_COMPONENT_CLASS_SINK_CONSUME_METHOD_STATUS_END;
  case BT_MESSAGE_ITERATOR_NEXT_STATUS_AGAIN:
    return BT_COMPONENT_CLASS_SINK_CONSUME_METHOD_STATUS_AGAIN;
  case BT_MESSAGE_ITERATOR_NEXT_STATUS_MEMORY_ERROR:
    return BT_COMPONENT_CLASS_SINK_CONSUME_METHOD_STATUS_MEMORY_ERROR;
  default:
    return BT_COMPONENT_CLASS_SINK_CONSUME_METHOD_STATUS_ERROR;
  }
  for (uint64_t i = 0; i < count; i++) {
    if (!im->err) hkl_message(im, msgs[i]);
    bt_message_put_ref(msgs[i]);
  }
  /* An error of ours ends the graph early: nothing after it can be used. */
  return im->err ? BT_COMPONENT_CLASS_SINK_CONSUME_METHOD_STATUS_END
                 : BT_COMPONENT_CLASS_SINK_CONSUME_METHOD_STATUS_OK;
}

static void hkl_sink_finalize(bt_self_component_sink *self) {
  hkl_importer *im = bt_self_component_get_data(bt_self_component_sink_as_self_component(self));
  if (im && im->it) { bt_message_iterator_put_ref(im->it); im->it = NULL; }
}

/* ---- the graph ----------------------------------------------------------- */

/* Every directory under root that holds a CTF trace (a `metadata` file):
 * LTTng writes one per buffer scheme and ABI, snapshots one per snapshot. */
static int hkl_find_traces(const char *root, bt_value *inputs, int depth) {
  char path[4200];
  struct stat st;
  int found = 0;
  snprintf(path, sizeof path, "%s/metadata", root);
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
    bt_value_array_append_string_element(inputs, root);
    return 1;
  }
  if (depth > 8) return 0;
  DIR *d = opendir(root);
  if (!d) return 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    if (de->d_name[0] == '.') continue;
    snprintf(path, sizeof path, "%s/%s", root, de->d_name);
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) found += hkl_find_traces(path, inputs, depth + 1);
  }
  closedir(d);
  return found;
}

/* babeltrace2's own error causes, most specific first, on one line. */
static void hkl_bt_error(hkl_importer *im, const char *what) {
  const bt_error *e = bt_current_thread_take_error();
  const char *msg = NULL;
  if (e && bt_error_get_cause_count(e))
    msg = bt_error_cause_get_message(bt_error_borrow_cause_by_index(e, 0));
  char line[512];
  snprintf(line, sizeof line, "%s", msg ? msg : "unknown error");
  for (char *p = line; *p; p++) if (*p == '\n') *p = ' ';
  hkl_fail(im, HKT_ERR_CORRUPT, "%s: %s", what, line);
  if (e) bt_error_release(e);
}

static int hkl_run_graph(hkl_importer *im) {
  const bt_plugin *ctf = NULL, *utils = NULL;
  bt_graph *g = NULL;
  bt_value *params = NULL, *inputs = NULL;
  bt_component_class_sink *sink_cls = NULL;
  int rc = HKT_ERR_IO;

  inputs = bt_value_array_create();
  params = bt_value_map_create();
  if (!inputs || !params) { hkl_fail(im, HKT_ERR_NOMEM, "out of memory"); goto out; }
  struct stat st;
  if (stat(im->dir, &st) || !S_ISDIR(st.st_mode)) {
    hkl_fail(im, HKT_ERR_IO, "%s", stat(im->dir, &st) ? strerror(errno) : "not a directory");
    goto out;
  }
  if (!hkl_find_traces(im->dir, inputs, 0)) {
    hkl_fail(im, HKT_ERR_NOT_TRACE, "no CTF trace here (no `metadata` file in it or below)");
    goto out;
  }
  bt_value_map_insert_entry(params, "inputs", inputs);
  if (bt_plugin_find("ctf", BT_TRUE, BT_TRUE, BT_TRUE, BT_TRUE, BT_TRUE, &ctf) != BT_PLUGIN_FIND_STATUS_OK ||
      bt_plugin_find("utils", BT_TRUE, BT_TRUE, BT_TRUE, BT_TRUE, BT_TRUE, &utils) != BT_PLUGIN_FIND_STATUS_OK) {
    hkl_fail(im, HKT_ERR_IO, "babeltrace2's ctf and utils plugins are not installed "
             "(Debian package libbabeltrace2-0)");
    goto out;
  }
  const bt_component_class_source *fs = bt_plugin_borrow_source_component_class_by_name_const(ctf, "fs");
  const bt_component_class_filter *mux = bt_plugin_borrow_filter_component_class_by_name_const(utils, "muxer");
  sink_cls = bt_component_class_sink_create("hakmem-import", hkl_sink_consume);
  if (!fs || !mux || !sink_cls) { hkl_fail(im, HKT_ERR_IO, "babeltrace2 component classes missing"); goto out; }
  bt_component_class_sink_set_initialize_method(sink_cls, hkl_sink_init);
  bt_component_class_sink_set_graph_is_configured_method(sink_cls, hkl_sink_configured);
  bt_component_class_sink_set_finalize_method(sink_cls, hkl_sink_finalize);

  g = bt_graph_create(0);
  const bt_component_source *src;
  const bt_component_filter *muxc;
  const bt_component_sink *sink;
  if (!g) { hkl_fail(im, HKT_ERR_NOMEM, "out of memory"); goto out; }
  if (bt_graph_add_source_component(g, fs, "ctf", params, BT_LOGGING_LEVEL_NONE, &src)) {
    hkl_bt_error(im, "reading the CTF trace");
    goto out;
  }
  if (bt_graph_add_filter_component(g, mux, "muxer", NULL, BT_LOGGING_LEVEL_NONE, &muxc) ||
      bt_graph_add_sink_component_with_initialize_method_data(g, sink_cls, "hakmem", NULL, im,
          BT_LOGGING_LEVEL_NONE, &sink)) {
    hkl_bt_error(im, "building the babeltrace2 graph");
    goto out;
  }
  /* Each stream of the source into a new muxer input (it adds one per
   * connection), the muxer into our sink. */
  uint64_t nout = bt_component_source_get_output_port_count(src);
  for (uint64_t i = 0; i < nout; i++) {
    const bt_port_input *in = bt_component_filter_borrow_input_port_by_index_const(muxc, i);
    if (!in || bt_graph_connect_ports(g, bt_component_source_borrow_output_port_by_index_const(src, i), in, NULL)) {
      hkl_bt_error(im, "connecting the muxer");
      goto out;
    }
  }
  if (bt_graph_connect_ports(g, bt_component_filter_borrow_output_port_by_index_const(muxc, 0),
                             bt_component_sink_borrow_input_port_by_index_const(sink, 0), NULL)) {
    hkl_bt_error(im, "connecting our sink");
    goto out;
  }
  for (;;) {
    bt_graph_run_status s = bt_graph_run(g);
    if (s == BT_GRAPH_RUN_STATUS_AGAIN) continue;
    if (s == BT_GRAPH_RUN_STATUS_OK) break;
    if (!im->err) hkl_bt_error(im, "reading the CTF trace");
    goto out;
  }
  rc = im->err;
out:
  bt_graph_put_ref(g);
  bt_component_class_sink_put_ref(sink_cls);
  bt_value_put_ref(params);
  bt_value_put_ref(inputs);
  bt_plugin_put_ref(ctf);
  bt_plugin_put_ref(utils);
  return im->err ? im->err : rc;
}

static void hkl_import_free(hkl_importer *im) {
  for (size_t i = 0; i < im->nheap; i++) { free(im->heap[i].str); free(im->heap[i].bid); }
  free(im->heap);
  if (im->mods)
    for (uint32_t i = 0; i < im->mods_seen; i++) free((char *)im->mods[i].path);
  free(im->mods);
  free(im->cmdline);
  free(im->config);
}

int hkl_import(const char *ctf_dir, const char *out, const hkl_import_opts *o,
               hkl_import_result *res) {
  hkl_importer im;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  memset(&im, 0, sizeof im);
  memset(res, 0, sizeof *res);
  im.dir = ctf_dir;
  im.out = out;
  im.o = o;
  im.r = res;
  im.window = o->window ? o->window : HKL_DEFAULT_WINDOW;
  res->pid = (uint32_t)o->pid;
  snprintf(im.part, sizeof im.part, "%s.part", out);

  int rc = hkl_run_graph(&im);
  if (!rc && !res->ctf_events) {
    if (res->other_events)
      hkl_fail(&im, HKT_ERR_NOT_TRACE, "no hakmem:* events in this CTF trace (%llu events of "
               "other providers, such as %s)", (unsigned long long)res->other_events, im.other_name);
    else
      hkl_fail(&im, HKT_ERR_NOT_TRACE, "no hakmem:* events in this CTF trace (it is empty)");
    rc = im.err;
  }
  if (!rc && !im.have_header)
    rc = (hkl_fail(&im, HKT_ERR_NOT_TRACE, "no hakmem:header for pid %u (was the session "
                   "started after the program?)", res->pid), im.err);
  if (!rc && !im.w && !im.err) hkl_open_writer(&im);  /* header without events */
  if (!rc) rc = im.err;
  if (!rc) {
    hkl_drain(&im);
    if (im.nheap && !im.gap) hkl_gap(&im, im.heap[0].ev.seq);
    rc = im.err;
  }
  if (!rc && !im.gap && !im.saw_end && o->end_how) {
    hkt_event end;
    memset(&end, 0, sizeof end);
    end.seq = im.next;
    end.kind = HKT_EV_END;
    end.fn = (uint16_t)o->end_how;
    end.aux = o->end_status;
    end.cls = HKT_NO_CLASS;
    end.time_ns = im.last_time;
    hkl_put(&im, &end);
    rc = im.err;
  }
  if (im.w) {
    int crc = hkt_writer_close(im.w, !rc && !im.gap);
    if (!rc && HKT_IS_ERR(crc)) rc = (hkl_fail(&im, crc, "%s: %s", im.part, hkt_strerror(crc)), crc);
    im.w = NULL;
  }
  if (!rc && rename(im.part, out)) {
    hkl_fail(&im, HKT_ERR_IO, "%s: %s", out, strerror(errno));
    rc = im.err;
  }
  if (rc) unlink(im.part);
  if (!rc && im.gap) {
    if (im.gap_window && !res->discarded)
      fprintf(stderr, "hakmem %s: %s: seq %llu did not come within the reorder window (%zu "
              "events): lost, or raise --window; %s holds the %llu events before it and is "
              "marked incomplete\n", o->cmd, ctf_dir, (unsigned long long)im.next, im.window, out,
              (unsigned long long)res->events);
    else
      fprintf(stderr, "hakmem %s: %s: %llu events lost (LTTng reported %llu discarded); %s holds "
              "the %llu events before seq %llu and is marked incomplete\n", o->cmd, ctf_dir,
              (unsigned long long)res->missing, (unsigned long long)res->discarded, out,
              (unsigned long long)res->events, (unsigned long long)im.next);
    rc = HKT_ERR_SEQUENCE;
  } else if (!rc && res->discarded) {
    fprintf(stderr, "hakmem %s: %s: LTTng reported %llu events discarded (none of them hakmem's "
            "recorded sequence)\n", o->cmd, ctf_dir, (unsigned long long)res->discarded);
  }
  if (!rc && im.several_pids)
    fprintf(stderr, "hakmem %s: %s: other processes in the trace were left out (%llu events); "
            "choose one with --pid\n", o->cmd, ctf_dir, (unsigned long long)res->other_pid_events);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  res->secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
  hkl_import_free(&im);
  return rc;
}
