/* inherit.c — a forked child's trace starts from its parent's heap.
 *
 * The header of a forked child's trace names its parent's trace and the
 * seq of the FORK event there (hkt_header.forked, fork_seq, parent_trace).
 * The parent's events before that seq go through collect.c into a state of
 * their own; what is live there at the fork (blocks, registered
 * SuperSlabs) is copied into the child's state before the child's pass.
 * The child's frees of the parent's blocks then resolve to where the parent
 * allocated them (HKA_BF_PARENT: seq and thread are the parent trace's),
 * a second free of one is a double_free, and a free of an address in an
 * inherited SuperSlab that the parent never handed out is an invalid_free
 * again. When the parent's own trace starts with its process (it is no
 * forked child itself) the heap at the fork is known whole, and any free
 * of an address neither trace allocated is an invalid_free. The parent's
 * blocks still live at the child's end are not the child's leaks (the
 * parent's own report has them): they are counted apart.
 *
 * The child has the parent's mappings, so when its header lists no
 * modules it takes the parent's as they were at the fork.
 *
 * One generation: a parent that is itself a forked child is read without
 * its own parent, so the grandparent's blocks stay unknown (counted by
 * collect.c as inherited, as in a trace whose parent is not found). */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"
#include "../replay/replay.h"   /* rp_parent_path */

/* Why the parent's trace was not read: a word (hka_inheritance) and one
 * line for the report. */
static __attribute__((format(printf, 3, 4))) void note(hka_state *s, const char *why, const char *fmt, ...) {
  char buf[1024];
  s->inh.parent_why = why;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  free(s->inh.parent_note);
  s->inh.parent_note = strdup(buf);
}

/* The parent's trace: parent_trace as recorded, else the same name in the
 * child's directory (a recording moved elsewhere, or named relative to
 * another directory: rp_parent_path, as replay and verify look). The first
 * that opens and is the trace of the child's parent pid, its name in
 * *path; else NULL and a note. */
static hkt_reader *open_parent(hka_state *s, char **path) {
  const char *given = s->parent_trace;
  char near[PATH_MAX];
  const char *cand[2] = {given, !rp_parent_path(s->path, &s->hdr, 1, near, sizeof near) ? near : NULL};
  hkt_reader *r = NULL;
  for (int i = 0; i < 2 && !r; i++) {
    if (!cand[i] || access(cand[i], F_OK) != 0) continue;
    if (HKT_IS_ERR(hkt_reader_open(&r, cand[i]))) {
      const char *m = hkt_reader_errmsg(r);
      note(s, "unreadable", "the parent's trace cannot be read: %s", m && *m ? m : cand[i]);
      if (r) hkt_reader_close(r);
      r = NULL;
      continue;
    }
    const hkt_header *h = hkt_reader_header(r);
    if (h->pid != s->hdr.ppid) {
      note(s, "not_the_parent", "%s is the trace of pid %u, not of the parent (pid %u)", cand[i], h->pid,
           s->hdr.ppid);
      hkt_reader_close(r);
      r = NULL;
      continue;
    }
    if (!(*path = strdup(cand[i]))) { hkt_reader_close(r); r = NULL; }
  }
  if (!r && !s->inh.parent_note) {
    if (cand[1]) note(s, "not_found", "the parent's trace %s was not found (nor %s)", given, cand[1]);
    else note(s, "not_found", "the parent's trace %s was not found", given);
  }
  return r;
}

/* The parent's events before the fork into p: 1 if the FORK event is where
 * the header says, 0 if not (and a note), or an error of the analysis. */
static int read_to_fork(hka_state *s, hka_state *p, hkt_reader *r, const char *path) {
  uint64_t fork_seq = s->inh.fork_seq;
  const hkt_event *ev;
  int n;
  while ((n = hkt_reader_batch(r, &ev)) > 0) {
    int k = 0;
    while (k < n && ev[k].seq < fork_seq) k++;
    HKT_TRY(hka_events(p, ev, k));
    if (k == n) continue;
    if (ev[k].seq == fork_seq && ev[k].kind == HKT_EV_FORK) return 1;
    note(s, "no_fork_event", "%s has no fork event at seq %llu (%s there)", path, (unsigned long long)fork_seq,
         ev[k].seq == fork_seq ? hkt_kind_name(ev[k].kind) : "no event");
    return 0;
  }
  if (HKT_IS_ERR(n))
    note(s, "ends_before_fork", "the parent's trace stops before its fork at seq %llu: %s",
         (unsigned long long)fork_seq, hkt_reader_errmsg(r));
  else
    note(s, "ends_before_fork", "%s ends at seq %llu, before its fork at seq %llu", path,
         (unsigned long long)(p->events ? p->last_seq : 0), (unsigned long long)fork_seq);
  return 0;
}

/* What is live in p (the parent at the fork) into s (the child, before its
 * first event). */
static int seed(hka_state *s, const hka_state *p) {
  uint32_t *to = calloc((size_t)p->nss + 1, sizeof *to);   /* parent record + 1 -> child's */
  if (!to) return HKT_ERR_NOMEM;
  for (uint32_t i = 0; i < p->nss; i++) {
    const hka_ss *ps = &p->ss[i];
    const uint64_t *v = hka_map_find(&p->ss_by_base, ps->base);
    if (ps->unreg_seq != HKA_NONE || !v || *v != i + 1) continue;   /* released, or not the latest */
    hka_ss *ss = hka_ss_new(s, ps->base, ps->size);
    if (!ss) { free(to); return HKT_ERR_NOMEM; }
    ss->id = ps->id;
    ss->cls = ps->cls;
    ss->owner = ps->owner;
    ss->parent_reg_seq = ps->reg_seq;
    ss->parent_reg_tid = ps->reg_tid;
    to[i + 1] = s->nss;
    hka_class *c = &s->cls[ps->cls < 64 ? ps->cls : HKA_LARGE];
    if (++c->ss_live > c->ss_peak) c->ss_peak = c->ss_live;
    if (++s->ss_live > s->ss_peak) s->ss_peak = s->ss_live;
    s->inh.superslabs++;
  }
  for (size_t i = 0; i < p->blocks.cap; i++) {
    const hka_block *pb = &p->blocks.slot[i];
    if (pb->state != HKA_B_LIVE) continue;
    hka_block *b = hka_blocks_get(&s->blocks, pb->ptr);
    if (!b) { free(to); return HKT_ERR_NOMEM; }
    *b = *pb;
    b->flags = HKA_BF_PARENT;
    b->stack_id = 0;                  /* the parent's stack table is not read */
    b->free_seq = HKA_NONE;           /* the parent's frees are not this trace's history */
    b->free_caller = 0;
    b->free_tid = HKA_NO_TID;
    b->ss = pb->ss ? to[pb->ss] : 0;
    if (b->ss) {
      hka_ss *ss = &s->ss[b->ss - 1];
      if (++ss->live > ss->peak_live) { ss->peak_live = ss->live; ss->peak_seq = HKA_NONE; }
    }
    s->blocks.live++;
    s->inh.blocks++;
    s->inh.bytes += b->size;
  }
  free(to);
  return 0;
}

int hka_inherit(hka_state *s) {
  if (!s->hdr.forked) return 0;
  if (!s->parent_trace || !*s->parent_trace) {
    note(s, "unnamed", "the header does not name the parent's trace");
    return 0;
  }
  char *path = NULL;
  hkt_reader *r = open_parent(s, &path);
  if (!r) return 0;
  hka_state *p = malloc(sizeof *p);
  int rc = p ? hka_init(p, path, hkt_reader_header(r)) : HKT_ERR_NOMEM;
  if (!HKT_IS_ERR(rc)) rc = read_to_fork(s, p, r, path);
  if (rc == 1 && !HKT_IS_ERR(rc = seed(s, p))) {
    if (!s->nmodules) {               /* a child's header without modules: the parent's at the fork */
      hka_module *m = s->modules;
      uint32_t cap = s->modules_cap;
      s->modules = p->modules;
      s->nmodules = p->nmodules;
      s->modules_cap = p->modules_cap;
      p->modules = m;
      p->nmodules = 0;
      p->modules_cap = cap;
    }
    s->inh.parent_path = path;        /* read: no note (of a first candidate) */
    s->inh.parent_whole = !p->inh.heap;
    s->inh.unknown_ok = !s->inh.parent_whole;
    path = NULL;
    free(s->inh.parent_note);
    s->inh.parent_note = NULL;
    s->inh.parent_why = NULL;
  }
  if (p) hka_free(p);
  free(p);
  free(path);
  hkt_reader_close(r);
  return rc;
}
