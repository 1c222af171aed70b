/* report_text.c — the report for a terminal: what went wrong first, then
 * the memory questions. Every line is cut to the output width. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"

#define MAX_SS_ROWS 40
#define MAX_LEAK_ROWS 20
#define MAX_STACK_FRAMES 8
#define MAX_PAIR_ROWS 20

typedef struct tx {
  FILE *f;
  int width;
  hka_symbolizer *sym;
  hkt_reader *r;
  int stable;                         /* --stable: no times, pid or absolute addresses */
} tx;

static __attribute__((format(printf, 2, 3))) void line(tx *t, const char *fmt, ...) {
  char buf[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = strlen(buf);
  if ((int)len > t->width && t->width > 3) {
    buf[t->width - 3] = 0;
    strcat(buf, "...");
  }
  len = strlen(buf);
  while (len && buf[len - 1] == ' ') buf[--len] = 0;
  fputs(buf, t->f);
  fputc('\n', t->f);
}

static void heading(tx *t, const char *title) {
  char buf[512];
  int n = snprintf(buf, sizeof buf, "== %s ", title);
  while (n < t->width && n < (int)sizeof buf - 1) buf[n++] = '=';
  buf[n] = 0;
  fputc('\n', t->f);
  line(t, "%s", buf);
}

static const char *site(tx *t, uint64_t addr, char *buf, size_t n) {
  hka_sym sym;
  hka_sym_lookup(t->sym, addr, &sym);
  return hka_sym_format(&sym, t->stable && !sym.module ? 0 : addr, buf, n);
}

/* prefix + a time, or "" under --stable */
static const char *at_time(tx *t, const char *prefix, uint64_t ns, char *buf, size_t n) {
  char s[64];
  if (t->stable) snprintf(buf, n, "%s", "");
  else snprintf(buf, n, "%s%s", prefix, hka_secs(ns, s, sizeof s));
  return buf;
}

static const char *tid_str(uint32_t tid, char *buf, size_t n) {
  if (tid == HKA_NO_TID) snprintf(buf, n, "?");
  else snprintf(buf, n, "%" PRIu32, tid);
  return buf;
}

static const char *cls_str(const hka_state *s, uint32_t cls, char *buf, size_t n) {
  if (cls >= 64) snprintf(buf, n, "large");
  else snprintf(buf, n, "C%u (%" PRIu64 " B)", cls, hka_class_size(s, cls));
  return buf;
}

static void holders_line(tx *t, const char *indent, const hka_ss *ss) {
  char buf[1024];
  size_t n = 0;
  for (uint32_t i = 0; i < ss->nholders && n < sizeof buf - 64; i++)
    n += (size_t)snprintf(buf + n, sizeof buf - n, "%sthread %" PRIu32 " %s %" PRIu64,
                          i ? "; " : "", ss->holders[i].tid, hka_hold_name(ss->holders[i].kind),
                          ss->holders[i].blocks);
  if (ss->held_unattributed && n < sizeof buf - 64)
    snprintf(buf + n, sizeof buf - n, "%sunattributed %" PRIu64, n ? "; " : "", ss->held_unattributed);
  if (ss->nholders || ss->held_unattributed) line(t, "%sheld by: %s", indent, buf);
}

static void ss_lifecycle(tx *t, const hka_state *s, const hka_ss *ss, const char *indent) {
  char a[64], b[64], c[64];
  line(t, "%ssuperslab #%" PRIu64 " at 0x%" PRIx64 " (%s, %s), owner thread %" PRIu32, indent,
       ss->id, ss->base, hka_bytes(ss->size, a, sizeof a), cls_str(s, ss->cls, b, sizeof b), ss->owner);
  if (ss->reg_seq != HKA_NONE)
    line(t, "%s  registered    seq %-10" PRIu64 " thread %-4s%s", indent, ss->reg_seq,
         tid_str(ss->reg_tid, a, sizeof a), at_time(t, " at ", ss->reg_time, c, sizeof c));
  else if (ss->parent_reg_seq != HKA_NONE)
    line(t, "%s  registered    in the parent, its seq %" PRIu64 " thread %s", indent, ss->parent_reg_seq,
         tid_str(ss->parent_reg_tid, a, sizeof a));
  else
    line(t, "%s  registered    before the trace starts", indent);
  if (ss->unreg_seq != HKA_NONE) {
    line(t, "%s  unregistered  seq %-10" PRIu64 " thread %-4s%s", indent, ss->unreg_seq,
         tid_str(ss->unreg_tid, a, sizeof a), at_time(t, " at ", ss->unreg_time, c, sizeof c));
    line(t, "%s    blocks still held then: %" PRIu64 " by the program, %" PRIu64 " by the allocator's count",
         indent, ss->live_at_unreg, ss->reported_live);
    char ind2[32];
    snprintf(ind2, sizeof ind2, "%s    ", indent);
    holders_line(t, ind2, ss);
  } else {
    line(t, "%s  still registered at the end", indent);
  }
  if (ss->invariant_seq != HKA_NONE) {
    line(t, "%s  invariant broken (ss_invariant) at seq %" PRIu64 " by thread %s", indent,
         ss->invariant_seq, tid_str(ss->invariant_tid, a, sizeof a));
    if (ss->unreg_seq == HKA_NONE) {
      line(t, "%s    blocks still held then: %" PRIu64 " by the program, %" PRIu64 " by the allocator's count",
           indent, ss->live_at_unreg, ss->reported_live);
      char ind2[32];
      snprintf(ind2, sizeof ind2, "%s    ", indent);
      holders_line(t, ind2, ss);
    }
  }
  line(t, "%s  peak %" PRIu64 " live blocks", indent, ss->peak_live);
}

/* Correlations come in runs (every stale block of one released SuperSlab):
 * the first few of each kind and SuperSlab in full, a SuperSlab's
 * lifecycle once, then a count of the rest. */
#define SHOW_PER_GROUP 3
#define MAX_GROUPS 32
typedef struct cgroup {
  const char *kind;
  uint32_t ss, shown, hidden;
  uint64_t hidden_lo, hidden_hi;
} cgroup;

typedef struct cctx {
  cgroup g[MAX_GROUPS];
  uint32_t ng;
  uint32_t ss_first[MAX_GROUPS];      /* SuperSlab record + 1 -> the # that printed it */
  uint32_t ss_at[MAX_GROUPS], nss;
} cctx;

static void correlation(tx *t, const hka_state *s, uint32_t i, cctx *x) {
  const hka_corr *c = &s->corr[i];
  char a[512], b[64], d[64];
  fputc('\n', t->f);
  line(t, "#%u %s (%s) at seq %" PRIu64 "%s, thread %" PRIu32 ": ptr 0x%" PRIx64, i + 1, c->kind,
       c->detect ? "detected by hakmem" : "found in the trace", c->seq,
       at_time(t, ", ", c->time_ns, b, sizeof b), c->tid, c->ptr);
  if (c->caller) line(t, "   called from %s", site(t, c->caller, a, sizeof a));
  if (c->free_seq != HKA_NONE) line(t, "   on the free at seq %" PRIu64, c->free_seq);
  if (!strcmp(c->kind, "alloc_unregistered"))
    line(t, "   thread %" PRIu32 " handed it out after its superslab was released: its cache still held the block",
         c->tid);
  if (c->have_block) {
    const hka_block *k = &c->block;
    line(t, "   block: %s, %s", hka_bytes(k->size, b, sizeof b), cls_str(s, k->cls, d, sizeof d));
    if (k->flags & HKA_BF_PARENT)
      line(t, "     allocated  in the parent, its seq %" PRIu64 " thread %" PRIu32 ", at %s", k->alloc_seq,
           k->alloc_tid, site(t, k->alloc_caller, a, sizeof a));
    else
      line(t, "     allocated  seq %-10" PRIu64 " thread %-4" PRIu32 " at %s", k->alloc_seq,
           k->alloc_tid, site(t, k->alloc_caller, a, sizeof a));
    if (k->state == HKA_B_FREED)
      line(t, "     freed      seq %-10" PRIu64 " thread %-4" PRIu32 " at %s%s", k->free_seq,
           k->free_tid, site(t, k->free_caller, a, sizeof a),
           (k->flags & HKA_BF_REMOTE) ? " (to a remote queue)" : "");
    else if (k->free_seq != HKA_NONE)
      line(t, "     before that allocation, freed at seq %" PRIu64 " by thread %" PRIu32
           " (whose cache held it) at %s", k->free_seq, k->free_tid, site(t, k->free_caller, a, sizeof a));
  } else if (c->detect != HKT_DET_SS_INVARIANT) {
    line(t, "   block: no allocation of this address in the trace");
  }
  if (c->ss) {
    uint32_t k = 0;
    while (k < x->nss && x->ss_first[k] != c->ss) k++;
    if (k < x->nss) {
      line(t, "   superslab #%" PRIu64 " (its lifecycle is under #%u above)", s->ss[c->ss - 1].id, x->ss_at[k] + 1);
    } else {
      if (x->nss < MAX_GROUPS) { x->ss_first[x->nss] = c->ss; x->ss_at[x->nss++] = i; }
      ss_lifecycle(t, s, &s->ss[c->ss - 1], "   ");
    }
    line(t, "   at the event the superslab was %s", c->ss_registered ? "registered" : "NOT registered");
  } else {
    line(t, "   superslab: none holds this address");
  }
}

/* A trace that starts in a running process (a forked child): what it freed
 * of the heap it started with, and where that was resolved from. */
static void inherited(tx *t, const hka_state *s) {
  const hka_inheritance *h = &s->inh;
  char a[64], b[64], pid[32] = "";
  if (!h->heap) return;
  if (!t->stable) snprintf(pid, sizeof pid, "pid %" PRIu32 ", ", s->hdr.ppid);
  if (h->parent_path) {
    line(t, "inherited  %" PRIu64 " blocks, %s in %" PRIu64 " superslabs: the parent's heap at its fork", h->blocks,
         hka_bytes(h->bytes, a, sizeof a), h->superslabs);
    line(t, "           (%sseq %" PRIu64 " of %s)", pid, h->fork_seq,
         t->stable ? hka_base_name(h->parent_path) : h->parent_path);
    line(t, "           %" PRIu64 " freed here (%s); %" PRIu64 " still live at the end (%s): "
         "the parent's, not leaks here",
         h->freed, hka_bytes(h->freed_bytes, a, sizeof a), h->live_end, hka_bytes(h->live_end_bytes, b, sizeof b));
    if (h->unknown_frees)
      line(t, "           %" PRIu64 " blocks freed that neither trace allocated (from before the parent's trace)",
           h->unknown_frees);
    return;
  }
  line(t, "inherited  %" PRIu64 " blocks freed that the trace did not allocate (%s)",
       h->unknown_frees, s->hdr.forked ? "a forked child: they are the parent's"
                                        : "it starts in a running process: from before it");
  if (s->hdr.forked)
    line(t, "           not resolved: %s", t->stable ? h->parent_why : h->parent_note);
}

static void summary(tx *t, const hka_state *s) {
  char a[64], b[64], c[64];
  heading(t, "Summary");
  char cmd[1024];
  const char *command = t->stable ? hka_stable_cmd(s->cmdline, cmd, sizeof cmd) : s->cmdline;
  line(t, "command    %s", command ? command : "?");
  if (t->stable) {
    line(t, "process    clock %s", s->clock ? s->clock : "?");
    line(t, "length     %" PRIu64 " events (seq %" PRIu64 "..%" PRIu64 ")",
         s->events, s->events ? s->first_seq : 0, s->last_seq);
  } else {
    line(t, "process    pid %" PRIu32 ", clock %s", s->hdr.pid, s->clock ? s->clock : "?");
    line(t, "duration   %s, %" PRIu64 " events (seq %" PRIu64 "..%" PRIu64 ")",
         hka_secs(s->last_time, a, sizeof a), s->events, s->events ? s->first_seq : 0, s->last_seq);
  }
  line(t, "ended      %s%s", hka_end_text(s, a, sizeof a), s->end_seen ? "" : " (no end event)");
  uint32_t threads = 0;
  for (uint32_t i = 0; i < s->nthreads; i++) threads += s->threads[i].seen;
  line(t, "threads    %" PRIu32, threads);
  line(t, "allocated  %" PRIu64 " blocks, %s (%" PRIu64 " failed)", s->allocs,
       hka_bytes(s->alloc_bytes, a, sizeof a), s->failed_allocs);
  line(t, "freed      %" PRIu64 " blocks, %s", s->frees, hka_bytes(s->free_bytes, a, sizeof a));
  inherited(t, s);
  char when[80];
  if (!t->stable) snprintf(when, sizeof when, " (%s)", hka_secs(s->peak_bytes_time, b, sizeof b));
  else when[0] = 0;
  line(t, "peak live  %s in %" PRIu64 " blocks at seq %" PRIu64 "%s; %" PRIu64 " blocks at most",
       hka_bytes(s->peak_bytes, a, sizeof a), s->peak_bytes_blocks, s->peak_bytes_seq, when, s->peak_blocks);
  line(t, "at end     %" PRIu64 " blocks, %s live; %" PRIu64 " superslabs registered (peak %" PRIu64 ")",
       s->live_blocks, hka_bytes(s->live_bytes, a, sizeof a), s->ss_live, s->ss_peak);
  if (s->large_maps)
    line(t, "large      %" PRIu64 " maps, %" PRIu64 " unmaps, peak %s mapped", s->large_maps,
         s->large_unmaps, hka_bytes(s->large_peak_mapped, c, sizeof c));
  /* events by kind, wrapped to the width */
  char buf[512];
  size_t n = (size_t)snprintf(buf, sizeof buf, "events    ");
  for (unsigned k = 1; k <= HKT_EV__COUNT; k++) {
    if (!s->by_kind[k]) continue;
    char item[64];
    int m = snprintf(item, sizeof item, " %s %" PRIu64, k < HKT_EV__COUNT ? hkt_kind_name(k) : "unknown",
                     s->by_kind[k]);
    if (n + (size_t)m > (size_t)t->width && n > 11) {
      line(t, "%s", buf);
      n = (size_t)snprintf(buf, sizeof buf, "          ");
    }
    memcpy(buf + n, item, (size_t)m + 1);
    n += (size_t)m;
  }
  if (n > 10) line(t, "%s", buf);
}

static void classes(tx *t, const hka_state *s) {
  char a[64], b[64];
  heading(t, "Size classes");
  line(t, "%-6s %7s %10s %10s %10s %10s %10s %9s %5s", "class", "size", "allocs", "frees", "bytes",
       "peak live", "peak bytes", "live end", "SS");
  for (uint32_t k = 0; k < HKA_CLASSES; k++) {
    const hka_class *c = &s->cls[k];
    if (!c->allocs && !c->frees && !c->ss_reg) continue;
    char name[16], size[16];
    if (k == HKA_LARGE) { snprintf(name, sizeof name, "large"); snprintf(size, sizeof size, "-"); }
    else { snprintf(name, sizeof name, "C%u", k); snprintf(size, sizeof size, "%" PRIu64, hka_class_size(s, k)); }
    line(t, "%-6s %7s %10" PRIu64 " %10" PRIu64 " %10s %10" PRIu64 " %10s %9" PRIu64 " %5" PRIu64,
         name, size, c->allocs, c->frees, hka_bytes(c->bytes, a, sizeof a), c->peak_live,
         hka_bytes(c->peak_live_bytes, b, sizeof b), c->live, c->ss_reg);
  }
}

static void superslabs(tx *t, const hka_state *s) {
  char a[64], b[64], c[64];
  heading(t, "SuperSlabs");
  if (!s->nss) { line(t, "none"); return; }
  line(t, "%6s %-14s %-6s %8s %-18s %-18s %6s %6s %s", "id", "base", "class", "size",
       "registered", "unregistered", "peak", "held", "");
  /* the ones with a problem first, then the rest in registration order */
  uint32_t shown = 0;
  for (int pass = 0; pass < 2; pass++)
    for (uint32_t i = 0; i < s->nss && shown < MAX_SS_ROWS; i++) {
      const hka_ss *ss = &s->ss[i];
      if (hka_ss_bad(ss) != (pass == 0)) continue;
      shown++;
      char reg[96], unreg[96];
      if (ss->reg_seq != HKA_NONE) snprintf(reg, sizeof reg, "%" PRIu64 "/t%s", ss->reg_seq, tid_str(ss->reg_tid, c, sizeof c));
      else if (ss->parent_reg_seq != HKA_NONE) snprintf(reg, sizeof reg, "parent:%" PRIu64, ss->parent_reg_seq);
      else snprintf(reg, sizeof reg, "-");
      if (ss->unreg_seq != HKA_NONE) snprintf(unreg, sizeof unreg, "%" PRIu64 "/t%s", ss->unreg_seq, tid_str(ss->unreg_tid, c, sizeof c));
      else snprintf(unreg, sizeof unreg, "live");
      char held[24];
      uint64_t h = ss->live_at_unreg > ss->reported_live ? ss->live_at_unreg : ss->reported_live;
      if (ss->unreg_seq != HKA_NONE) snprintf(held, sizeof held, "%" PRIu64, h);
      else snprintf(held, sizeof held, "-");
      line(t, "%6" PRIu64 " 0x%-12" PRIx64 " %-6s %8s %-18s %-18s %6" PRIu64 " %6s %s", ss->id, ss->base,
           ss->cls < 64 ? (snprintf(a, sizeof a, "C%u", ss->cls), a) : "?",
           hka_bytes(ss->size, b, sizeof b), reg, unreg, ss->peak_live, held,
           hka_ss_bad(ss) ? "<- problem" : "");
      if (hka_ss_bad(ss)) holders_line(t, "         ", ss);
    }
  if (s->nss > shown)
    line(t, "... %" PRIu32 " more (all of them in --format json)", s->nss - shown);
}

static void leaks(tx *t, const hka_state *s) {
  char a[512], b[64];
  heading(t, "Leaks (blocks live at the end, by callsite)");
  if (!s->nleaks) { line(t, "none"); return; }
  line(t, "%s in %" PRIu64 " blocks from %" PRIu32 " callsites", hka_bytes(s->leak_bytes, b, sizeof b),
       s->leak_blocks, s->nleaks);
  line(t, "%10s %8s  %s", "bytes", "blocks", "allocated at");
  for (uint32_t i = 0; i < s->nleaks && i < MAX_LEAK_ROWS; i++) {
    const hka_leak *l = &s->leaks[i];
    line(t, "%10" PRIu64 " %8" PRIu64 "  %s", l->bytes, l->blocks,
         hka_sym_format(&l->sym, t->stable && !l->sym.module ? 0 : l->caller, a, sizeof a));
    const uint64_t *fr = NULL;
    uint32_t n = 0;
    if (l->stack_id && t->r && !HKT_IS_ERR(hkt_reader_stack(t->r, l->stack_id, &fr, &n)))
      for (uint32_t k = hka_stack_skip(t->sym, fr, n), i = 0; k < n && i < MAX_STACK_FRAMES; k++, i++)
        line(t, "%21s#%u %s", "", i, site(t, fr[k], a, sizeof a));
  }
  if (s->nleaks > MAX_LEAK_ROWS) line(t, "... %" PRIu32 " more callsites", s->nleaks - MAX_LEAK_ROWS);
}

static void cross_thread(tx *t, const hka_state *s) {
  heading(t, "Cross-thread frees (allocating thread -> freeing thread)");
  line(t, "%" PRIu64 " frees by the allocating thread, %" PRIu64 " by another", s->same_thread_frees,
       s->cross_thread_frees);
  size_t n;
  uint64_t *p = hka_xthread_pairs(s, &n);
  if (!p || !n) { free(p); return; }
  /* a matrix when it fits, else the biggest pairs */
  uint32_t nt = s->nthreads;
  int cellw = 8;
  if (nt <= 16 && 8 + (int)nt * cellw <= t->width) {
    char buf[512];
    int k = snprintf(buf, sizeof buf, "%8s", "a\\f");
    for (uint32_t f = 0; f < nt; f++) k += snprintf(buf + k, sizeof buf - (size_t)k, "%*s%u", cellw - 1, "t", f);
    line(t, "%s", buf);
    for (uint32_t a = 0; a < nt; a++) {
      k = snprintf(buf, sizeof buf, "%7s%u", "t", a);
      int any = 0;
      for (uint32_t f = 0; f < nt; f++) {
        const uint64_t *v = hka_map_find(&s->xthread, (uint64_t)a << 32 | f);
        if (v) any = 1;
        if (v) k += snprintf(buf + k, sizeof buf - (size_t)k, "%*" PRIu64, cellw, *v);
        else k += snprintf(buf + k, sizeof buf - (size_t)k, "%*s", cellw, a == f ? "-" : ".");
      }
      if (any) line(t, "%s", buf);
    }
  } else {
    /* sort by count, descending */
    for (size_t i = 1; i < n; i++)
      for (size_t j = i; j > 0 && p[2 * j + 1] > p[2 * j - 1]; j--) {
        uint64_t k0 = p[2 * j], v0 = p[2 * j + 1];
        p[2 * j] = p[2 * j - 2]; p[2 * j + 1] = p[2 * j - 1];
        p[2 * j - 2] = k0; p[2 * j - 1] = v0;
      }
    for (size_t i = 0; i < n && i < MAX_PAIR_ROWS; i++)
      line(t, "  thread %" PRIu64 " -> thread %" PRIu64 ": %" PRIu64 " frees", p[2 * i] >> 32,
           p[2 * i] & 0xffffffffu, p[2 * i + 1]);
    if (n > MAX_PAIR_ROWS) line(t, "  ... %zu more pairs", n - MAX_PAIR_ROWS);
  }
  free(p);
}

/* One row of bars scaled to the highest value; each column covers one or
 * more buckets (their maximum). which: 0 live bytes, 1 SuperSlabs, 2 + c
 * SuperSlabs of class c. */
static void spark(tx *t, const char *label, const hka_state *s, int which) {
  static const char ramp[] = " .:-=+*#%@";
  int cols = t->width - 16;             /* label, " |", "|" */
  if (cols < 10 || !s->tl.n) return;
  if ((uint32_t)cols > s->tl.n) cols = (int)s->tl.n;
  uint64_t v[HKA_TL_MAX] = {0}, max = 0;
  for (int c = 0; c < cols; c++) {
    uint32_t lo = (uint32_t)((uint64_t)c * s->tl.n / (uint64_t)cols);
    uint32_t hi = (uint32_t)((uint64_t)(c + 1) * s->tl.n / (uint64_t)cols);
    for (uint32_t i = lo; i < hi; i++) {
      uint64_t x = which == 0 ? s->tl.b[i].max_live_bytes
                 : which == 1 ? s->tl.b[i].ss_max : s->tl.b[i].ss_live[which - 2];
      if (x > v[c]) v[c] = x;
    }
    if (v[c] > max) max = v[c];
  }
  char buf[HKA_TL_MAX + 1];
  for (int c = 0; c < cols; c++)
    buf[c] = ramp[max ? (v[c] * 9 + max - 1) / max : 0];
  buf[cols] = 0;
  line(t, "%-12s |%s|", label, buf);
}

static void timeline(tx *t, const hka_state *s) {
  char a[64], b[64];
  heading(t, "Over time");
  spark(t, "live bytes", s, 0);
  spark(t, "superslabs", s, 1);
  int rows = 0;
  for (int c = 0; c < HKA_CLASSES && rows < 12; c++) {
    if (!s->cls[c].ss_reg) continue;
    char label[32];
    if (c == HKA_LARGE) snprintf(label, sizeof label, "  no class");
    else snprintf(label, sizeof label, "  C%d (%u)", c, (unsigned)s->cls[c].ss_peak);
    spark(t, label, s, 2 + c);
    rows++;
  }
  line(t, "%-12s  seq %" PRIu64 "..%" PRIu64 "%s; max %s live, %" PRIu64 " superslabs", "", s->events ? s->first_seq : 0,
       s->last_seq, at_time(t, ", ", s->last_time, a, sizeof a), hka_bytes(s->peak_bytes, b, sizeof b), s->ss_peak);
}

int hka_report_text(const hka_state *s, hka_out *o) {
  tx t = {o->f, o->width > 20 ? o->width : 100, o->sym, o->r, o->stable};
  line(&t, "hakmem analyze: %s", t.stable ? hka_base_name(s->path) : s->path);
  if (s->read_error)
    line(&t, "!! the trace is cut short (%s): this report covers the %" PRIu64 " events up to seq %" PRIu64,
         s->read_errmsg, s->events, s->last_seq);
  else if (!s->complete)
    line(&t, "!! the trace has no end frame (the recorder did not finish): this report covers "
         "%" PRIu64 " events up to seq %" PRIu64, s->events, s->last_seq);
  if (s->ncorr) {
    heading(&t, "Stale-pointer correlation");
    line(&t, "%" PRIu64 " problem%s found%s", s->ncorr + s->corr_dropped, s->ncorr + s->corr_dropped == 1 ? "" : "s",
         s->corr_dropped ? " (only the first ones are kept)" : "");
    cctx *x = calloc(1, sizeof *x);
    uint32_t printed = 0, rest = 0;
    for (uint32_t i = 0; x && i < s->ncorr; i++) {
      const hka_corr *c = &s->corr[i];
      uint32_t k = 0;
      while (k < x->ng && !(x->g[k].ss == c->ss && !strcmp(x->g[k].kind, c->kind))) k++;
      if (k == x->ng && x->ng < MAX_GROUPS) x->g[x->ng++] = (cgroup){c->kind, c->ss, 0, 0, 0, 0};
      cgroup *g = k < x->ng ? &x->g[k] : NULL;
      if (g && g->shown < SHOW_PER_GROUP && printed < 20) {
        correlation(&t, s, i, x);
        g->shown++;
        printed++;
      } else if (g) {
        if (!g->hidden++) g->hidden_lo = c->seq;
        g->hidden_hi = c->seq;
      } else {
        rest++;
      }
    }
    if (x) {
      int first = 1;
      for (uint32_t k = 0; k < x->ng; k++) {
        cgroup *g = &x->g[k];
        if (!g->hidden) continue;
        if (first) { fputc('\n', t.f); first = 0; }
        if (g->ss)
          line(&t, "... and %" PRIu32 " more %s in superslab #%" PRIu64 " (seq %" PRIu64 "..%" PRIu64 ")",
               g->hidden, g->kind, s->ss[g->ss - 1].id, g->hidden_lo, g->hidden_hi);
        else
          line(&t, "... and %" PRIu32 " more %s (seq %" PRIu64 "..%" PRIu64 ")", g->hidden, g->kind,
               g->hidden_lo, g->hidden_hi);
      }
      if (rest) line(&t, "... and %" PRIu32 " more of other kinds", rest);
      if (s->corr_dropped) line(&t, "... and %" PRIu64 " past the first %u kept", s->corr_dropped, HKA_MAX_CORR);
      line(&t, "(every one in --format json)");
    }
    free(x);
  }
  summary(&t, s);
  classes(&t, s);
  superslabs(&t, s);
  leaks(&t, s);
  cross_thread(&t, s);
  timeline(&t, s);
  return ferror(o->f) ? HKT_ERR_IO : 0;
}
