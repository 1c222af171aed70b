/* report_html.c — one self-contained HTML file (well-formed XML too, no
 * script, no external asset) with inline SVG: live bytes over time, and
 * SuperSlab lifelines per class with register/unregister marks and the
 * detections placed on them; then the tables of the text report. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "analyze.h"

#define SVG_W 1000
#define MAX_LIFELINES 300
#define MAX_ROWS 200

static void esc(FILE *f, const char *s) {
  for (; s && *s; s++) {
    switch (*s) {
    case '&': fputs("&amp;", f); break;
    case '<': fputs("&lt;", f); break;
    case '>': fputs("&gt;", f); break;
    case '"': fputs("&quot;", f); break;
    default:
      if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t') fputc('?', f);
      else fputc(*s, f);
    }
  }
}

static void site(FILE *f, hka_symbolizer *z, uint64_t addr) {
  hka_sym sym;
  char buf[512];
  hka_sym_lookup(z, addr, &sym);
  esc(f, hka_sym_format(&sym, addr, buf, sizeof buf));
}

/* x position of a seq on the charts */
typedef struct scale { uint64_t lo, hi; int x0, w; } scale;
static double sx(const scale *c, uint64_t seq) {
  if (c->hi <= c->lo) return c->x0;
  if (seq < c->lo) seq = c->lo;
  if (seq > c->hi) seq = c->hi;
  return c->x0 + (double)(seq - c->lo) * c->w / (double)(c->hi - c->lo);
}

static void live_bytes_chart(FILE *f, const hka_state *s, const scale *c) {
  const int h = 220, top = 20, bottom = 190;
  char a[64];
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\">\n", SVG_W, h, SVG_W, h);
  fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>\n", c->x0, top, c->w,
          bottom - top);
  uint64_t max = s->peak_bytes ? s->peak_bytes : 1;
  fputs("<polyline class=\"live\" points=\"", f);
  for (uint32_t i = 0; i < s->tl.n; i++) {
    const hka_bucket *b = &s->tl.b[i];
    uint64_t end = i + 1 < s->tl.n ? s->tl.b[i + 1].seq0 : s->last_seq;
    double y = bottom - (double)b->max_live_bytes * (bottom - top) / (double)max;
    fprintf(f, "%.1f,%.1f %.1f,%.1f ", sx(c, b->seq0), y, sx(c, end), y);
  }
  fputs("\"/>\n", f);
  fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\">%s</text>\n", 4, top + 10, hka_bytes(max, a, sizeof a));
  fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\">0</text>\n", 4, bottom);
  fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\">seq %" PRIu64 "</text>\n", c->x0, bottom + 16, c->lo);
  fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"end\">seq %" PRIu64 "</text>\n",
          c->x0 + c->w, bottom + 16, c->hi);
  if (s->peak_bytes)
    fprintf(f, "<circle cx=\"%.1f\" cy=\"%d\" r=\"4\" class=\"peak\"><title>peak %s at seq %" PRIu64
               "</title></circle>\n", sx(c, s->peak_bytes_seq), top, hka_bytes(s->peak_bytes, a, sizeof a),
            s->peak_bytes_seq);
  for (uint32_t i = 0; i < s->ncorr; i++)
    fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" class=\"det\"><title>%s at seq %" PRIu64
               "</title></line>\n", sx(c, s->corr[i].seq), top, sx(c, s->corr[i].seq), bottom,
            s->corr[i].kind, s->corr[i].seq);
  fputs("</svg>\n", f);
}

static void lifelines_chart(FILE *f, const hka_state *s, const scale *c) {
  /* which SuperSlabs get a line: the ones with problems first, up to a cap;
   * rows grouped by class, in registration order within a class */
  uint32_t *row = calloc(s->nss + 1, sizeof *row);   /* row + 1, 0 = not drawn */
  double *ypos = calloc(s->nss + 1, sizeof *ypos);
  if (!row || !ypos) { free(row); free(ypos); return; }
  uint32_t picked = 0;
  for (int pass = 0; pass < 2; pass++)
    for (uint32_t i = 0; i < s->nss && picked < MAX_LIFELINES; i++)
      if (hka_ss_bad(&s->ss[i]) == (pass == 0)) { row[i] = 1; picked++; }
  uint32_t nrows = 0, groups = 0;
  for (uint32_t k = 0; k < HKA_CLASSES; k++) {
    int any = 0;
    for (uint32_t i = 0; i < s->nss; i++) {
      uint32_t cls = s->ss[i].cls < 64 ? s->ss[i].cls : HKA_LARGE;
      if (row[i] && cls == k) { row[i] = ++nrows; any = 1; }
    }
    groups += any;
  }
  const int rh = 12, top = 10;
  int h = top + (int)nrows * rh + (int)groups * 14 + 30;
  fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" height=\"%d\" "
             "viewBox=\"0 0 %d %d\">\n", SVG_W, h, SVG_W, h);
  int y = top;
  for (uint32_t k = 0; k < HKA_CLASSES; k++) {
    int header = 0;
    for (uint32_t i = 0; i < s->nss; i++) {
      const hka_ss *ss = &s->ss[i];
      uint32_t cls = ss->cls < 64 ? ss->cls : HKA_LARGE;
      if (!row[i] || cls != k) continue;
      if (!header) {
        y += 14;
        if (k == HKA_LARGE) fprintf(f, "<text x=\"4\" y=\"%d\" class=\"cls\">no class</text>\n", y - 2);
        else fprintf(f, "<text x=\"4\" y=\"%d\" class=\"cls\">C%u (%" PRIu64 " B)</text>\n", y - 2, k,
                     hka_class_size(s, k));
        header = 1;
      }
      double yy = y + rh / 2.0;
      ypos[i] = yy;
      uint64_t from = ss->reg_seq != HKA_NONE ? ss->reg_seq : c->lo;
      uint64_t to = ss->unreg_seq != HKA_NONE ? ss->unreg_seq : c->hi;
      fprintf(f, "<g><title>SuperSlab #%" PRIu64 " base 0x%" PRIx64 " seq %" PRIu64 "..%s%" PRIu64
                 " peak %" PRIu64 " blocks</title>\n", ss->id, ss->base, from,
              ss->unreg_seq != HKA_NONE ? "" : "end ", to, ss->peak_live);
      fprintf(f, "<text x=\"4\" y=\"%.1f\" class=\"lbl\">#%" PRIu64 "</text>\n", yy + 3, ss->id);
      fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" class=\"%s\"/>\n", sx(c, from), yy,
              sx(c, to), yy, hka_ss_bad(ss) ? "life bad" : "life");
      if (ss->reg_seq != HKA_NONE)
        fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" class=\"reg\"/>\n", sx(c, from), yy);
      if (ss->unreg_seq != HKA_NONE)
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"3\" height=\"9\" class=\"unreg%s\"/>\n",
                sx(c, to) - 1.5, yy - 4.5, hka_ss_bad(ss) ? " bad" : "");
      fputs("</g>\n", f);
      y += rh;
    }
  }
  /* detections on the lifeline of their SuperSlab */
  for (uint32_t i = 0; i < s->ncorr; i++) {
    const hka_corr *d = &s->corr[i];
    if (!d->ss || !row[d->ss - 1]) continue;
    double x = sx(c, d->seq), cy = ypos[d->ss - 1];
    fprintf(f, "<path d=\"M%.1f,%.1f l-5,-9 l10,0 z\" class=\"detm\"><title>%s at seq %" PRIu64
               ", ptr 0x%" PRIx64 ", thread %" PRIu32 "</title></path>\n", x, cy, d->kind, d->seq, d->ptr, d->tid);
  }
  fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\">seq %" PRIu64 "</text>\n", c->x0, h - 6, c->lo);
  fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"axis\" text-anchor=\"end\">seq %" PRIu64 "</text>\n",
          c->x0 + c->w, h - 6, c->hi);
  fputs("</svg>\n", f);
  if (s->nss > picked) fprintf(f, "<p>%" PRIu32 " more SuperSlabs not drawn.</p>\n", s->nss - picked);
  free(row);
  free(ypos);
}

static void corr_html(FILE *f, const hka_state *s, hka_symbolizer *z, uint32_t i) {
  const hka_corr *c = &s->corr[i];
  char a[64];
  fprintf(f, "<div class=\"corr\"><h3>#%u %s at seq %" PRIu64 ", thread %" PRIu32 ", ptr 0x%" PRIx64 "</h3>\n<ul>\n",
          i + 1, c->kind, c->seq, c->tid, c->ptr);
  fprintf(f, "<li>%s</li>\n", c->detect ? "detected by hakmem" : "found in the trace by the analysis");
  if (c->caller) { fputs("<li>called from ", f); site(f, z, c->caller); fputs("</li>\n", f); }
  if (!strcmp(c->kind, "alloc_unregistered"))
    fprintf(f, "<li>thread %" PRIu32 " handed it out after its SuperSlab was released: its cache still held "
               "the block</li>\n", c->tid);
  if (c->have_block) {
    const hka_block *b = &c->block;
    fprintf(f, "<li>block of %s: allocated %sat seq %" PRIu64 " by thread %" PRIu32 " at ",
            hka_bytes(b->size, a, sizeof a), b->flags & HKA_BF_PARENT ? "in the parent " : "", b->alloc_seq,
            b->alloc_tid);
    site(f, z, b->alloc_caller);
    fputs("</li>\n", f);
    if (b->state == HKA_B_FREED) {
      fprintf(f, "<li>freed at seq %" PRIu64 " by thread %" PRIu32 " at ", b->free_seq, b->free_tid);
      site(f, z, b->free_caller);
      fputs("</li>\n", f);
    }
    else if (b->free_seq != HKA_NONE)
      fprintf(f, "<li>before that allocation, freed at seq %" PRIu64 " by thread %" PRIu32
                 " (whose cache held it)</li>\n", b->free_seq, b->free_tid);
  }
  if (c->ss) {
    const hka_ss *ss = &s->ss[c->ss - 1];
    fprintf(f, "<li>SuperSlab #%" PRIu64 " at 0x%" PRIx64 ": registered at seq ", ss->id, ss->base);
    if (ss->reg_seq != HKA_NONE) fprintf(f, "%" PRIu64 " by thread %" PRIu32, ss->reg_seq, ss->reg_tid);
    else fputs("?", f);
    if (ss->unreg_seq != HKA_NONE) {
      fprintf(f, ", unregistered at seq %" PRIu64 " by thread %" PRIu32 " with %" PRIu64
                 " blocks held by the program, %" PRIu64 " by the allocator's count", ss->unreg_seq,
              ss->unreg_tid, ss->live_at_unreg, ss->reported_live);
    } else {
      fputs(", still registered at the end", f);
    }
    if (ss->invariant_seq != HKA_NONE)
      fprintf(f, ", invariant broken (ss_invariant) at seq %" PRIu64 " by thread %" PRIu32
                 " (%" PRIu64 " held by the program, %" PRIu64 " by the allocator's count)", ss->invariant_seq,
              ss->invariant_tid, ss->live_at_unreg, ss->reported_live);
    for (uint32_t h = 0; h < ss->nholders; h++)
      fprintf(f, "%s thread %" PRIu32 " %s %" PRIu64, h ? ";" : "; held by", ss->holders[h].tid,
              hka_hold_name(ss->holders[h].kind), ss->holders[h].blocks);
    fprintf(f, "; %s at the event</li>\n", c->ss_registered ? "registered" : "<b>not registered</b>");
  }
  fputs("</ul></div>\n", f);
}

int hka_report_html(const hka_state *s, hka_out *o) {
  FILE *f = o->f;
  char a[64], b[64];
  fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"/>\n<title>hakmem report: ", f);
  esc(f, s->path);
  fputs("</title>\n<style>\n"
        "body{font:14px sans-serif;margin:20px;color:#222;background:#fff}\n"
        "h1{font-size:20px} h2{font-size:17px;border-bottom:1px solid #ccc;margin-top:28px}\n"
        "h3{font-size:14px;margin:6px 0}\n"
        "table{border-collapse:collapse} td,th{padding:2px 8px;border:1px solid #ddd;text-align:right}\n"
        "td.l,th.l{text-align:left} .warn{background:#fff3cd;padding:8px;border:1px solid #e0c060}\n"
        ".corr{background:#fde8e8;border-left:4px solid #c00;padding:4px 10px;margin:8px 0}\n"
        ".chart{border:1px solid #eee;display:block;margin:8px 0}\n"
        ".frame{fill:#fafafa;stroke:#ccc} .live{fill:none;stroke:#1f6fb2;stroke-width:2}\n"
        ".axis,.lbl,.cls{font:11px sans-serif;fill:#555} .cls{font-weight:bold;fill:#222}\n"
        ".life{stroke:#4a9a4a;stroke-width:4} .life.bad{stroke:#d08000}\n"
        ".reg{fill:#2a7a2a} .unreg{fill:#333} .unreg.bad{fill:#c00}\n"
        ".det{stroke:#c00;stroke-dasharray:3,3} .detm{fill:#c00} .peak{fill:#1f6fb2}\n"
        "</style></head><body>\n<h1>hakmem report: ", f);
  esc(f, s->path);
  fputs("</h1>\n", f);
  if (s->read_error) {
    fputs("<p class=\"warn\">The trace is cut short (", f);
    esc(f, s->read_errmsg);
    fprintf(f, "): this report covers the %" PRIu64 " events up to seq %" PRIu64 ".</p>\n", s->events, s->last_seq);
  } else if (!s->complete) {
    fprintf(f, "<p class=\"warn\">The trace has no end frame: this report covers the %" PRIu64
               " events up to seq %" PRIu64 ".</p>\n", s->events, s->last_seq);
  }
  if (s->ncorr) {
    fprintf(f, "<h2>Stale-pointer correlation (%" PRIu64 ")</h2>\n", s->ncorr + s->corr_dropped);
    for (uint32_t i = 0; i < s->ncorr && i < MAX_ROWS; i++) corr_html(f, s, o->sym, i);
  }

  fputs("<h2>Summary</h2>\n<table>\n<tr><th class=\"l\">command</th><td class=\"l\">", f);
  esc(f, s->cmdline);
  fprintf(f, "</td></tr>\n<tr><th class=\"l\">pid</th><td class=\"l\">%" PRIu32 "</td></tr>\n", s->hdr.pid);
  fprintf(f, "<tr><th class=\"l\">duration</th><td class=\"l\">%s, %" PRIu64 " events</td></tr>\n",
          hka_secs(s->last_time, a, sizeof a), s->events);
  fprintf(f, "<tr><th class=\"l\">ended</th><td class=\"l\">%s</td></tr>\n", hka_end_text(s, b, sizeof b));
  uint32_t threads = 0;
  for (uint32_t i = 0; i < s->nthreads; i++) threads += s->threads[i].seen;
  fprintf(f, "<tr><th class=\"l\">threads</th><td class=\"l\">%" PRIu32 "</td></tr>\n", threads);
  fprintf(f, "<tr><th class=\"l\">allocated</th><td class=\"l\">%" PRIu64 " blocks, %s</td></tr>\n", s->allocs,
          hka_bytes(s->alloc_bytes, a, sizeof a));
  if (s->inh.heap) {
    fputs("<tr><th class=\"l\">inherited</th><td class=\"l\">", f);
    if (s->inh.parent_path) {
      fprintf(f, "the parent's heap at its fork (pid %" PRIu32 ", seq %" PRIu64 " of ", s->hdr.ppid, s->inh.fork_seq);
      esc(f, s->inh.parent_path);
      fprintf(f, "): %" PRIu64 " blocks, %" PRIu64 " freed here, %" PRIu64 " still live at the end (the parent's, "
                 "not counted as leaks)", s->inh.blocks, s->inh.freed, s->inh.live_end);
      if (s->inh.unknown_frees)
        fprintf(f, "; %" PRIu64 " blocks freed that neither trace allocated", s->inh.unknown_frees);
    } else {
      fprintf(f, "%" PRIu64 " blocks freed that the trace did not allocate (%s: they are the parent's)",
              s->inh.unknown_frees,
              s->hdr.forked ? "a forked child" : "it starts in a running process, e.g. a forked child");
      if (s->inh.parent_note) {
        fputs("; not resolved: ", f);
        esc(f, s->inh.parent_note);
      }
    }
    fputs("</td></tr>\n", f);
  }
  fprintf(f, "<tr><th class=\"l\">peak live</th><td class=\"l\">%s in %" PRIu64 " blocks at seq %" PRIu64 "</td></tr>\n",
          hka_bytes(s->peak_bytes, a, sizeof a), s->peak_bytes_blocks, s->peak_bytes_seq);
  fprintf(f, "<tr><th class=\"l\">leaked</th><td class=\"l\">%s in %" PRIu64 " blocks</td></tr>\n</table>\n",
          hka_bytes(s->leak_bytes, a, sizeof a), s->leak_blocks);

  scale c = {s->events ? s->first_seq : 0, s->last_seq, 60, SVG_W - 80};
  fputs("<h2>Live bytes over time</h2>\n", f);
  live_bytes_chart(f, s, &c);
  fputs("<h2>SuperSlab lifelines</h2>\n<p>Green dot: registered; bar: unregistered (red: with blocks "
        "still held); red triangle: a detection or bad free.</p>\n", f);
  lifelines_chart(f, s, &c);

  fputs("<h2>Size classes</h2>\n<table><tr><th>class</th><th>size</th><th>allocs</th><th>frees</th>"
        "<th>bytes</th><th>peak live</th><th>live at end</th><th>SuperSlabs</th></tr>\n", f);
  for (uint32_t k = 0; k < HKA_CLASSES; k++) {
    const hka_class *cl = &s->cls[k];
    if (!cl->allocs && !cl->frees && !cl->ss_reg) continue;
    if (k == HKA_LARGE) fputs("<tr><td>large</td><td>-</td>", f);
    else fprintf(f, "<tr><td>C%u</td><td>%" PRIu64 "</td>", k, hka_class_size(s, k));
    fprintf(f, "<td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64
               "</td><td>%" PRIu64 "</td></tr>\n", cl->allocs, cl->frees, cl->bytes, cl->peak_live, cl->live, cl->ss_reg);
  }
  fputs("</table>\n", f);

  fputs("<h2>SuperSlabs</h2>\n<table><tr><th>id</th><th class=\"l\">base</th><th>class</th><th>size</th>"
        "<th>registered</th><th>unregistered</th><th>peak</th><th>held at release</th></tr>\n", f);
  for (uint32_t i = 0; i < s->nss && i < MAX_ROWS; i++) {
    const hka_ss *ss = &s->ss[i];
    fprintf(f, "<tr><td>%" PRIu64 "</td><td class=\"l\">0x%" PRIx64 "</td><td>%u</td><td>%s</td>", ss->id,
            ss->base, ss->cls, hka_bytes(ss->size, a, sizeof a));
    if (ss->reg_seq != HKA_NONE) fprintf(f, "<td>seq %" PRIu64 " t%" PRIu32 "</td>", ss->reg_seq, ss->reg_tid);
    else fputs("<td>-</td>", f);
    if (ss->unreg_seq != HKA_NONE)
      fprintf(f, "<td>seq %" PRIu64 " t%" PRIu32 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td></tr>\n",
              ss->unreg_seq, ss->unreg_tid, ss->peak_live,
              ss->live_at_unreg > ss->reported_live ? ss->live_at_unreg : ss->reported_live);
    else
      fprintf(f, "<td>live</td><td>%" PRIu64 "</td><td>-</td></tr>\n", ss->peak_live);
  }
  fputs("</table>\n", f);

  fputs("<h2>Leaks by callsite</h2>\n<table><tr><th>bytes</th><th>blocks</th><th class=\"l\">allocated at</th></tr>\n", f);
  for (uint32_t i = 0; i < s->nleaks && i < MAX_ROWS; i++) {
    char buf[512];
    fprintf(f, "<tr><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td class=\"l\">", s->leaks[i].bytes, s->leaks[i].blocks);
    esc(f, hka_sym_format(&s->leaks[i].sym, s->leaks[i].caller, buf, sizeof buf));
    fputs("</td></tr>\n", f);
  }
  fputs("</table>\n", f);

  fprintf(f, "<h2>Cross-thread frees</h2>\n<p>%" PRIu64 " frees by the allocating thread, %" PRIu64
             " by another.</p>\n<table><tr><th>allocating thread</th><th>freeing thread</th><th>frees</th></tr>\n",
          s->same_thread_frees, s->cross_thread_frees);
  size_t n;
  uint64_t *p = hka_xthread_pairs(s, &n);
  for (size_t i = 0; p && i < n && i < MAX_ROWS; i++)
    fprintf(f, "<tr><td>%" PRIu64 "</td><td>%" PRIu64 "</td><td>%" PRIu64 "</td></tr>\n", p[2 * i] >> 32,
            p[2 * i] & 0xffffffffu, p[2 * i + 1]);
  free(p);
  fputs("</table>\n</body></html>\n", f);
  return ferror(f) ? HKT_ERR_IO : 0;
}
