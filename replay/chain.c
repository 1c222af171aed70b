/* chain.c — a forked child's trace, read after its parents'.
 *
 * A forked child's heap starts as its parent's was at the parent's FORK
 * event (the child's header names it: hkt_header.fork_seq, parent_trace).
 * So the child replays only after the parent's events before that fork,
 * and those after the parent's own parent's fork, and so on: a chain of
 * segments, the oldest ancestor first, each cut at its child's fork, the
 * trace itself last. Events come out with one seq across the chain: a
 * segment's own seqs plus its base (the seqs of the segments before it),
 * so the trace's own seq is the chain's minus rp_chain.base. The parents'
 * threads other than the forking one stop at the fork: they get no more
 * events (their replay threads park, as those threads vanished). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "replay.h"

int rp_parent_path(const char *child, const hkt_header *h, unsigned i, char *out, size_t n) {
  const char *p = h->parent_trace;
  if (!h->forked || !p || !*p || i > 1) return -1;
  if (i == 0) { snprintf(out, n, "%s", p); return 0; }
  const char *base = strrchr(p, '/');
  base = base ? base + 1 : p;
  const char *slash = strrchr(child, '/');
  int dir = slash ? (int)(slash - child + 1) : 0;
  snprintf(out, n, "%.*s%s", dir, child, base);
  return strcmp(out, p) ? 0 : -1;
}

/* The first of rp_parent_path's candidates that can be read. */
static int find_parent(const char *child, const hkt_header *h, char *out, size_t n) {
  for (unsigned i = 0; !rp_parent_path(child, h, i, out, n); i++)
    if (access(out, R_OK) == 0) return 0;
  return -1;
}

void rp_chain_close(rp_chain *c) {
  for (unsigned i = 0; i < c->n; i++)
    if (c->rd[i]) hkt_reader_close(c->rd[i]);
  memset(c, 0, sizeof *c);
}

int rp_chain_open(rp_chain *c, const char *path, char *msg, size_t msg_len) {
  memset(c, 0, sizeof *c);
  hkt_reader *rd[RP_CHAIN_MAX];
  char paths[RP_CHAIN_MAX][1024];
  uint64_t cut[RP_CHAIN_MAX];   /* rd[i] read up to its child's fork (rd[0] is the trace itself) */
  unsigned n = 0;
  snprintf(paths[0], sizeof paths[0], "%s", path);
  cut[0] = UINT64_MAX;
  for (;;) {   /* rd[n] is opened here; its header names rd[n + 1] */
    int e = hkt_reader_open(&rd[n], paths[n]);
    if (HKT_IS_ERR(e)) {
      const char *m = hkt_reader_errmsg(rd[n]);
      if (n == 0) snprintf(msg, msg_len, "%s", m && *m ? m : hkt_strerror(e));
      else snprintf(msg, msg_len, "the trace of its parent process: %s", m && *m ? m : hkt_strerror(e));
      if (rd[n]) hkt_reader_close(rd[n]);
      goto fail;
    }
    const hkt_header *h = hkt_reader_header(rd[n]);
    if (n > 0 && h->pid != hkt_reader_header(rd[n - 1])->ppid) {
      snprintf(msg, msg_len, "%s: its parent's trace %s is of pid %u, not of the parent pid %u", paths[n - 1],
               paths[n], h->pid, hkt_reader_header(rd[n - 1])->ppid);
      hkt_reader_close(rd[n]);
      goto fail;
    }
    n++;
    if (!h->forked) break;
    if (n == RP_CHAIN_MAX) {
      snprintf(msg, msg_len, "%s: forked from a chain of more than %d processes", path, RP_CHAIN_MAX - 1);
      goto fail;
    }
    if (find_parent(paths[n - 1], h, paths[n], sizeof paths[n])) {
      snprintf(msg, msg_len,
               "%s: a forked child's trace (pid %u, forked at seq %llu of pid %u's trace %s): its heap starts "
               "as its parent's, and that trace is not there (nor next to this one)",
               paths[n - 1], h->pid, (unsigned long long)h->fork_seq, h->ppid,
               *h->parent_trace ? h->parent_trace : "(not named)");
      goto fail;
    }
    cut[n] = h->fork_seq;
  }
  /* oldest first: segment i is rd[n - 1 - i] */
  uint64_t base = 0;
  for (unsigned i = 0; i < n; i++) {
    unsigned k = n - 1 - i;
    c->rd[i] = rd[k];
    c->end[i] = cut[k];
    snprintf(c->path[i], sizeof c->path[i], "%s", paths[k]);
    c->base_of[i] = base;
    if (i + 1 < n) base += c->end[i];
  }
  c->n = n;
  c->base = base;
  return 0;
fail:
  for (unsigned i = 0; i < n; i++) hkt_reader_close(rd[i]);
  return -1;
}

/* The next events of the chain into out (at most max): 1.. read, 0 the end
 * of the trace, < 0 an error (c->msg says which file and what). */
int rp_chain_batch(rp_chain *c, hkt_event *out, unsigned max) {
  for (;;) {
    unsigned i = c->cur;
    int r = hkt_reader_batch_into(c->rd[i], out, max);
    if (r < 0 || (r == 0 && i + 1 == c->n)) {
      if (r < 0) snprintf(c->msg, sizeof c->msg, "%s", hkt_reader_errmsg(c->rd[i]));
      return r;
    }
    if (r == 0) {   /* a parent's trace ends before the fork its child's header names */
      snprintf(c->msg, sizeof c->msg, "%s: the trace ends before seq %llu, where its child forked", c->path[i],
               (unsigned long long)c->end[i]);
      return HKT_ERR_SEQUENCE;
    }
    int k = 0;
    while (k < r && out[k].seq < c->end[i]) out[k].seq += c->base_of[i], k++;
    if (k < r) c->cur = i + 1;   /* the fork: the next segment from here */
    if (k > 0) return k;
  }
}
