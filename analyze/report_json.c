/* report_json.c — the report as JSON; docs/report-schema.md describes every
 * field. Addresses are "0x..." strings (JSON numbers lose bits past 2^53);
 * absent seqs and threads are null. */
#include <stdlib.h>
#include <string.h>

#include "analyze.h"
#include "jsonw.h"

/* --stable: fields that change from run to run of the same program (times,
 * pid, os thread ids, load addresses, absolute paths) are null or reduced
 * to a base name. Set once per report. */
static int stable;

static void jw_time(jw *j, const char *key, uint64_t ns) {
  if (stable) jw_null(j, key); else jw_u64(j, key, ns);
}

static void callsite(jw *j, const char *key, hka_symbolizer *z, uint64_t addr) {
  if (!addr) { jw_null(j, key); return; }
  hka_sym sym;
  hka_sym_lookup(z, addr, &sym);
  jw_open_compact(j, key, '{');
  if (stable) jw_null(j, "address"); else jw_addr(j, "address", addr);
  jw_str(j, "function", sym.function);
  jw_str(j, "file", stable ? hka_base_name(sym.file) : sym.file);
  if (sym.line) jw_u64(j, "line", (uint64_t)sym.line); else jw_null(j, "line");
  jw_str(j, "module", sym.module);
  if (sym.module) jw_addr(j, "offset", sym.offset); else jw_null(j, "offset");
  jw_close(j, '}');
}

static void stack(jw *j, const hka_out *o, uint32_t id) {
  const uint64_t *frames = NULL;
  uint32_t n = 0;
  if (!id || !o->r || HKT_IS_ERR(hkt_reader_stack(o->r, id, &frames, &n)) || !n) {
    jw_null(j, "stack");
    return;
  }
  jw_open(j, "stack", '[');
  for (uint32_t i = hka_stack_skip(o->sym, frames, n); i < n; i++) callsite(j, NULL, o->sym, frames[i]);
  jw_close(j, ']');
}

static void when(jw *j, const char *key, uint64_t seq, uint64_t time, uint32_t tid) {
  if (seq == HKA_NONE) { jw_null(j, key); return; }
  jw_open_compact(j, key, '{');
  jw_u64(j, "seq", seq);
  jw_time(j, "time_ns", time);
  jw_opt(j, "thread", tid, HKA_NO_TID);
  jw_close(j, '}');
}

static void class_ref(jw *j, const char *key, uint32_t cls) {
  if (cls < 64) jw_u64(j, key, cls); else jw_null(j, key);
}

static void holders(jw *j, const hka_ss *ss) {
  jw_open(j, "held_by", '[');
  for (uint32_t i = 0; i < ss->nholders; i++) {
    jw_open_compact(j, NULL, '{');
    jw_u64(j, "thread", ss->holders[i].tid);
    jw_str(j, "kind", hka_hold_name(ss->holders[i].kind));
    jw_u64(j, "blocks", ss->holders[i].blocks);
    jw_close(j, '}');
  }
  jw_close(j, ']');
  jw_u64(j, "unattributed_blocks", ss->held_unattributed);
}

static void superslab(jw *j, const char *key, const hka_ss *ss) {
  jw_open(j, key, '{');
  jw_u64(j, "id", ss->id);
  jw_addr(j, "base", ss->base);
  jw_u64(j, "size", ss->size);
  class_ref(j, "class", ss->cls);
  jw_u64(j, "owner", ss->owner);
  when(j, "registered", ss->reg_seq, ss->reg_time, ss->reg_tid);
  when(j, "unregistered", ss->unreg_seq, ss->unreg_time, ss->unreg_tid);
  if (ss->parent_reg_seq != HKA_NONE) {
    jw_open_compact(j, "registered_in_parent", '{');
    jw_u64(j, "seq", ss->parent_reg_seq);
    jw_opt(j, "thread", ss->parent_reg_tid, HKA_NO_TID);
    jw_close(j, '}');
  } else {
    jw_null(j, "registered_in_parent");
  }
  jw_u64(j, "peak_live_blocks", ss->peak_live);
  jw_opt(j, "peak_seq", ss->peak_live ? ss->peak_seq : HKA_NONE, HKA_NONE);
  jw_u64(j, "allocations", ss->allocs);
  jw_u64(j, "frees", ss->frees);
  jw_u64(j, "remote_pushes", ss->remote_pushes);
  jw_u64(j, "drains", ss->drains);
  jw_u64(j, "refills", ss->refills);
  jw_u64(j, "adoptions", ss->adopts);
  if (ss->invariant_seq != HKA_NONE) {
    jw_open_compact(j, "invariant_broken", '{');
    jw_u64(j, "seq", ss->invariant_seq);
    jw_u64(j, "thread", ss->invariant_tid);
    jw_close(j, '}');
  } else {
    jw_null(j, "invariant_broken");
  }
  if (ss->unreg_seq != HKA_NONE || ss->invariant_seq != HKA_NONE) {
    jw_u64(j, "live_blocks_at_unregister", ss->live_at_unreg);
    jw_u64(j, "allocator_live_at_unregister", ss->reported_live);
  } else {
    jw_null(j, "live_blocks_at_unregister");
    jw_null(j, "allocator_live_at_unregister");
  }
  holders(j, ss);
  jw_u64(j, "detections", ss->detections);
  jw_close(j, '}');
}

static void block_history(jw *j, const hka_out *o, const hka_corr *c) {
  if (!c->have_block) { jw_null(j, "block"); return; }
  const hka_block *b = &c->block;
  jw_open(j, "block", '{');
  jw_str(j, "state_before", b->state == HKA_B_LIVE ? "live" : "freed");
  jw_u64(j, "size", b->size);
  class_ref(j, "class", b->cls);
  jw_open(j, "allocated", '{');
  jw_u64(j, "seq", b->alloc_seq);
  jw_u64(j, "thread", b->alloc_tid);
  jw_bool(j, "in_parent", b->flags & HKA_BF_PARENT);
  callsite(j, "callsite", o->sym, b->alloc_caller);
  stack(j, o, b->stack_id);
  jw_close(j, '}');
  if (b->state == HKA_B_FREED) {
    jw_open(j, "freed", '{');
    jw_u64(j, "seq", b->free_seq);
    jw_u64(j, "thread", b->free_tid);
    jw_bool(j, "remote", b->flags & HKA_BF_REMOTE);
    callsite(j, "callsite", o->sym, b->free_caller);
    jw_close(j, '}');
    jw_null(j, "previously_freed");
  } else if (b->free_seq != HKA_NONE) {
    jw_null(j, "freed");
    jw_open(j, "previously_freed", '{');
    jw_u64(j, "seq", b->free_seq);
    jw_u64(j, "thread", b->free_tid);
    callsite(j, "callsite", o->sym, b->free_caller);
    jw_close(j, '}');
  } else {
    jw_null(j, "freed");
    jw_null(j, "previously_freed");
  }
  jw_close(j, '}');
}

/* A trace that starts in a running process (a forked child): the blocks
 * from before it, and the parent's trace they were resolved from. */
static void inherited(jw *j, const hka_state *s) {
  const hka_inheritance *h = &s->inh;
  jw_open_compact(j, "inherited", '{');
  jw_bool(j, "heap", h->heap);
  jw_bool(j, "forked", s->hdr.forked);
  jw_u64(j, "unknown_blocks_freed", h->unknown_frees);
  if (!s->hdr.forked) {
    jw_null(j, "parent");
    jw_close(j, '}');
    return;
  }
  jw_open_compact(j, "parent", '{');
  if (stable) jw_null(j, "pid"); else jw_u64(j, "pid", s->hdr.ppid);
  jw_str(j, "trace", stable ? hka_base_name(s->parent_trace) : s->parent_trace);
  jw_u64(j, "fork_seq", h->fork_seq);
  jw_bool(j, "read", h->parent_path != NULL);
  jw_str(j, "read_from", stable ? hka_base_name(h->parent_path) : h->parent_path);
  jw_str(j, "not_read_because", h->parent_why);
  jw_str(j, "note", stable ? NULL : h->parent_note);
  jw_u64(j, "blocks_at_fork", h->blocks);
  jw_u64(j, "bytes_at_fork", h->bytes);
  jw_u64(j, "superslabs_at_fork", h->superslabs);
  jw_u64(j, "blocks_freed", h->freed);
  jw_u64(j, "bytes_freed", h->freed_bytes);
  jw_u64(j, "blocks_live_at_end", h->live_end);
  jw_u64(j, "bytes_live_at_end", h->live_end_bytes);
  jw_close(j, '}');
  jw_close(j, '}');
}

static void summary(jw *j, const hka_state *s) {
  char buf[256], cmd[1024];
  jw_open(j, "summary", '{');
  jw_str(j, "command", stable ? hka_stable_cmd(s->cmdline, cmd, sizeof cmd) : s->cmdline);
  if (stable) {
    jw_null(j, "pid");
    jw_null(j, "ppid");
  } else {
    jw_u64(j, "pid", s->hdr.pid);
    jw_u64(j, "ppid", s->hdr.ppid);
  }
  jw_time(j, "start_realtime_ns", s->hdr.start_realtime_ns);
  jw_str(j, "clock", s->clock);
  jw_addr(j, "arena_base", s->hdr.arena_base);
  jw_time(j, "duration_ns", s->last_time);
  jw_u64(j, "events", s->events);
  jw_opt(j, "first_seq", s->events ? s->first_seq : HKA_NONE, HKA_NONE);
  jw_opt(j, "last_seq", s->events ? s->last_seq : HKA_NONE, HKA_NONE);
  jw_open_compact(j, "end", '{');
  jw_str(j, "how", !s->end_seen ? "unknown" : s->end_how == HKT_END_EXIT ? "exit"
                 : s->end_how == HKT_END_SIGNAL ? "signal" : "unknown");
  if (s->end_seen && s->end_how != HKT_END_UNKNOWN) jw_u64(j, "code", s->end_code);
  else jw_null(j, "code");
  jw_str(j, "text", hka_end_text(s, buf, sizeof buf));
  jw_close(j, '}');
  jw_open_compact(j, "events_by_kind", '{');
  for (unsigned k = 1; k <= HKT_EV__COUNT; k++)
    if (s->by_kind[k]) jw_u64(j, k < HKT_EV__COUNT ? hkt_kind_name(k) : "unknown", s->by_kind[k]);
  jw_close(j, '}');
  uint32_t threads = 0;
  for (uint32_t t = 0; t < s->nthreads; t++) threads += s->threads[t].seen;
  jw_u64(j, "threads", threads);
  jw_u64(j, "allocations", s->allocs);
  jw_u64(j, "frees", s->frees);
  jw_u64(j, "failed_allocations", s->failed_allocs);
  jw_u64(j, "allocated_bytes", s->alloc_bytes);
  jw_u64(j, "freed_bytes", s->free_bytes);
  jw_u64(j, "live_blocks", s->live_blocks);
  jw_u64(j, "live_bytes", s->live_bytes);
  jw_u64(j, "peak_live_bytes", s->peak_bytes);
  jw_opt(j, "peak_live_bytes_seq", s->peak_bytes ? s->peak_bytes_seq : HKA_NONE, HKA_NONE);
  jw_time(j, "peak_live_bytes_time_ns", s->peak_bytes_time);
  jw_u64(j, "peak_live_blocks", s->peak_blocks);
  jw_opt(j, "peak_live_blocks_seq", s->peak_blocks ? s->peak_blocks_seq : HKA_NONE, HKA_NONE);
  uint64_t reg = 0, unreg = 0;
  for (int c = 0; c < HKA_CLASSES; c++) { reg += s->cls[c].ss_reg; unreg += s->cls[c].ss_unreg; }
  jw_open_compact(j, "superslabs", '{');
  jw_u64(j, "registered", reg);
  jw_u64(j, "unregistered", unreg);
  jw_u64(j, "peak_live", s->ss_peak);
  jw_u64(j, "live_at_end", s->ss_live);
  jw_close(j, '}');
  jw_open_compact(j, "large", '{');
  jw_u64(j, "maps", s->large_maps);
  jw_u64(j, "unmaps", s->large_unmaps);
  jw_u64(j, "peak_mapped_bytes", s->large_peak_mapped);
  jw_close(j, '}');
  jw_u64(j, "markers", s->markers);
  jw_u64(j, "detection_events", s->by_kind[HKT_EV_DETECTION]);
  jw_open_compact(j, "detections_by_kind", '{');
  for (unsigned d = 1; d <= HKT_DET__COUNT; d++)
    if (s->detect_counts[d]) jw_u64(j, d < HKT_DET__COUNT ? hkt_detect_name(d) : "unknown", s->detect_counts[d]);
  jw_close(j, '}');
  jw_u64(j, "correlations", s->ncorr + s->corr_dropped);
  jw_u64(j, "correlations_dropped", s->corr_dropped);
  jw_u64(j, "leaked_blocks", s->leak_blocks);
  jw_u64(j, "leaked_bytes", s->leak_bytes);
  inherited(j, s);
  jw_close(j, '}');
}

static void detections(jw *j, const hka_state *s, const hka_out *o) {
  jw_open(j, "detections", '[');
  for (uint32_t i = 0; i < s->ncorr; i++) {
    const hka_corr *c = &s->corr[i];
    jw_open(j, NULL, '{');
    jw_u64(j, "seq", c->seq);
    jw_time(j, "time_ns", c->time_ns);
    jw_str(j, "kind", c->kind);
    jw_str(j, "source", c->detect ? "detection" : "analysis");
    jw_addr(j, "ptr", c->ptr);
    jw_u64(j, "thread", c->tid);
    jw_opt(j, "free_seq", c->free_seq, HKA_NONE);
    jw_u64(j, "extra", c->extra);
    callsite(j, "callsite", o->sym, c->caller);
    block_history(j, o, c);
    if (c->ss) {
      jw_bool(j, "superslab_registered_at_event", c->ss_registered);
      superslab(j, "superslab", &s->ss[c->ss - 1]);
    } else {
      jw_null(j, "superslab_registered_at_event");
      jw_null(j, "superslab");
    }
    jw_close(j, '}');
  }
  jw_close(j, ']');
}

static void classes(jw *j, const hka_state *s) {
  jw_open(j, "classes", '[');
  for (uint32_t k = 0; k < HKA_CLASSES; k++) {
    const hka_class *c = &s->cls[k];
    if (!c->allocs && !c->frees && !c->ss_reg && !c->refills && !c->flushes) continue;
    jw_open_compact(j, NULL, '{');
    if (k == HKA_LARGE) { jw_null(j, "class"); jw_str(j, "name", "large"); jw_null(j, "block_size"); }
    else {
      char name[16];
      snprintf(name, sizeof name, "C%u", k);
      jw_u64(j, "class", k);
      jw_str(j, "name", name);
      jw_u64(j, "block_size", hka_class_size(s, k));
    }
    jw_u64(j, "allocations", c->allocs);
    jw_u64(j, "frees", c->frees);
    jw_u64(j, "bytes", c->bytes);
    jw_u64(j, "freed_bytes", c->freed_bytes);
    jw_u64(j, "live_blocks", c->live);
    jw_u64(j, "live_bytes", c->live_bytes);
    jw_u64(j, "peak_live_blocks", c->peak_live);
    jw_u64(j, "peak_live_bytes", c->peak_live_bytes);
    jw_u64(j, "refills", c->refills);
    jw_u64(j, "refill_blocks", c->refill_blocks);
    jw_u64(j, "flushes", c->flushes);
    jw_u64(j, "flush_blocks", c->flush_blocks);
    jw_u64(j, "remote_pushes", c->remote_pushes);
    jw_u64(j, "drains", c->drains);
    jw_u64(j, "superslabs_registered", c->ss_reg);
    jw_u64(j, "superslabs_unregistered", c->ss_unreg);
    jw_u64(j, "peak_superslabs", c->ss_peak);
    jw_close(j, '}');
  }
  jw_close(j, ']');
}

static void leaks(jw *j, const hka_state *s, const hka_out *o) {
  jw_open(j, "leaks", '[');
  for (uint32_t i = 0; i < s->nleaks; i++) {
    const hka_leak *l = &s->leaks[i];
    jw_open(j, NULL, '{');
    jw_open_compact(j, "callsite", '{');
    if (stable) jw_null(j, "address"); else jw_addr(j, "address", l->caller);
    jw_str(j, "function", l->sym.function);
    jw_str(j, "file", stable ? hka_base_name(l->sym.file) : l->sym.file);
    if (l->sym.line) jw_u64(j, "line", (uint64_t)l->sym.line); else jw_null(j, "line");
    jw_str(j, "module", l->sym.module);
    if (l->sym.module) jw_addr(j, "offset", l->sym.offset); else jw_null(j, "offset");
    jw_close(j, '}');
    jw_u64(j, "blocks", l->blocks);
    jw_u64(j, "bytes", l->bytes);
    jw_u64(j, "first_seq", l->first_seq);
    jw_u64(j, "thread", l->tid);
    stack(j, o, l->stack_id);
    jw_close(j, '}');
  }
  jw_close(j, ']');
}

static int pair_cmp(const void *a, const void *b) {
  const uint64_t *x = a, *y = b;
  return x[0] < y[0] ? -1 : x[0] > y[0];
}

/* The cross-thread pairs sorted by (alloc thread, free thread): [key, n]... */
uint64_t *hka_xthread_pairs(const hka_state *s, size_t *n) {
  uint64_t *p = malloc((s->xthread.n + 1) * 2 * sizeof *p);
  *n = 0;
  if (!p) return NULL;
  for (size_t i = 0; i < s->xthread.cap; i++)
    if (s->xthread.keys[i] != HKA_NONE) {
      p[2 * *n] = s->xthread.keys[i];
      p[2 * *n + 1] = s->xthread.vals[i];
      ++*n;
    }
  qsort(p, *n, 2 * sizeof *p, pair_cmp);
  return p;
}

static void cross_thread(jw *j, const hka_state *s) {
  jw_open(j, "cross_thread", '{');
  jw_u64(j, "same_thread_frees", s->same_thread_frees);
  jw_u64(j, "cross_thread_frees", s->cross_thread_frees);
  size_t n;
  uint64_t *p = hka_xthread_pairs(s, &n);
  jw_open(j, "pairs", '[');
  for (size_t i = 0; p && i < n; i++) {
    jw_open_compact(j, NULL, '{');
    jw_u64(j, "alloc_thread", p[2 * i] >> 32);
    jw_u64(j, "free_thread", p[2 * i] & 0xffffffffu);
    jw_u64(j, "frees", p[2 * i + 1]);
    jw_close(j, '}');
  }
  jw_close(j, ']');
  free(p);
  jw_close(j, '}');
}

static void threads(jw *j, const hka_state *s) {
  jw_open(j, "threads", '[');
  for (uint32_t t = 0; t < s->nthreads; t++) {
    const hka_thread *th = &s->threads[t];
    if (!th->seen) continue;
    jw_open_compact(j, NULL, '{');
    jw_u64(j, "thread", t);
    if (stable) jw_null(j, "os_tid"); else jw_u64(j, "os_tid", th->os_tid);
    jw_opt(j, "start_seq", th->start_seq, HKA_NONE);
    jw_opt(j, "exit_seq", th->exit_seq, HKA_NONE);
    jw_u64(j, "allocations", th->allocs);
    jw_u64(j, "frees", th->frees);
    jw_u64(j, "bytes", th->bytes);
    jw_close(j, '}');
  }
  jw_close(j, ']');
}

static void timeline(jw *j, const hka_state *s) {
  int used[HKA_CLASSES] = {0};
  for (int c = 0; c < HKA_CLASSES; c++) used[c] = s->cls[c].ss_reg || s->cls[c].ss_unreg;
  jw_open(j, "timeline", '{');
  jw_u64(j, "bucket_seqs", s->tl.width);
  jw_open_compact(j, "classes", '[');
  for (int c = 0; c < HKA_CLASSES; c++) if (used[c]) class_ref(j, NULL, (uint32_t)c);
  jw_close(j, ']');
  jw_open(j, "buckets", '[');
  for (uint32_t i = 0; i < s->tl.n; i++) {
    const hka_bucket *b = &s->tl.b[i];
    jw_open_compact(j, NULL, '{');
    jw_u64(j, "seq", b->seq0);
    jw_time(j, "time_ns", b->time0);
    jw_time(j, "end_time_ns", b->time1);
    jw_u64(j, "live_bytes", b->live_bytes);
    jw_u64(j, "max_live_bytes", b->max_live_bytes);
    jw_u64(j, "live_blocks", b->live_blocks);
    jw_u64(j, "superslabs", b->ss_total);
    jw_u64(j, "max_superslabs", b->ss_max);
    jw_open(j, "superslabs_by_class", '[');
    for (int c = 0; c < HKA_CLASSES; c++) if (used[c]) jw_u64(j, NULL, b->ss_live[c]);
    jw_close(j, ']');
    jw_u64(j, "detections", b->detections);
    jw_close(j, '}');
  }
  jw_close(j, ']');
  jw_close(j, '}');
}

int hka_report_json(const hka_state *s, hka_out *o) {
  jw j;
  stable = o->stable;
  jw_init(&j, o->f);
  jw_open(&j, NULL, '{');
  jw_u64(&j, "hakmem_report", 1);
  jw_open(&j, "trace", '{');
  jw_str(&j, "file", stable ? hka_base_name(s->path) : s->path);
  if (stable) jw_bool(&j, "stable", 1);
  jw_u64(&j, "format_version", s->hdr.version);
  jw_bool(&j, "complete", s->complete);
  jw_bool(&j, "truncated", !s->complete);
  jw_str(&j, "error", s->read_error ? s->read_errmsg : NULL);
  jw_u64(&j, "ghost_blocks_dropped", s->blocks.ghosts_dropped);
  jw_close(&j, '}');
  summary(&j, s);
  detections(&j, s, o);
  classes(&j, s);
  jw_open(&j, "superslabs", '[');
  for (uint32_t i = 0; i < s->nss; i++) superslab(&j, NULL, &s->ss[i]);
  jw_close(&j, ']');
  leaks(&j, s, o);
  cross_thread(&j, s);
  threads(&j, s);
  timeline(&j, s);
  jw_close(&j, '}');
  return ferror(o->f) ? HKT_ERR_IO : 0;
}
