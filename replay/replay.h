/* replay.h — the replayer's pieces, shared by cmd_replay.c, engine.c,
 * addrmap.c, state.c and minimize.c.
 *
 * One replay runs in a process of its own (the allocator reads its
 * configuration once, at start-up): `hakmem replay` prepares the
 * environment from the trace header and re-executes itself, in place for a
 * single replay (so a debugger follows it), in children for --repeat,
 * --against and minimize. rp_run() is that process's work. */
#ifndef HAK_REPLAY_H
#define HAK_REPLAY_H

#include <stdint.h>
#include <stdio.h>
#include "hakmem/trace.h"

/* How calls are driven and what is checked. */
typedef enum rp_mode {
  RP_HAKMEM,    /* hak_* calls; every emitted event compared with the recorded one */
  RP_LENIENT,   /* hak_* calls in recorded order, addresses mapped, only detections kept (minimize) */
  RP_FUNCS,     /* the process's own malloc family (glibc, or an LD_PRELOADed library) */
} rp_mode;

typedef struct rp_options {
  const char *path;
  rp_mode mode;
  uint64_t stop_at;         /* UINT64_MAX: none */
  double stall_s;           /* watchdog: no progress for this long = stalled */
  int progress;             /* progress line on stderr (a terminal, > 1 s) */
  volatile uint64_t *shared_seq; /* RP_FUNCS: seq of the call in progress, for the parent */
  const char *record_to;    /* RP_LENIENT: write every event the allocator makes to this trace */
} rp_options;

typedef struct rp_detection { uint64_t seq, ptr; uint32_t kind, tid; } rp_detection;
#define RP_MAX_DET 64

typedef struct rp_result {
  uint64_t events;          /* events of the trace read (every kind) */
  uint64_t replayed;        /* of them, re-driven or checked */
  uint64_t last_seq;        /* seq of the last event read */
  uint32_t threads;         /* recorded thread indices seen */
  int complete;             /* the trace has its END event */
  unsigned end_kind;        /* enum hkt_end, when complete */
  uint64_t end_aux;
  int read_err;             /* <0: the trace stops at an error */
  char read_msg[512];
  int diverged;             /* first_divergence below is set */
  int div_got_none;         /* the expected event never came (stall) or came too many */
  int div_exp_none;         /* an event the trace does not have */
  hkt_event div_expected, div_got;
  int stalled;
  int stopped;              /* --stop-at reached */
  int beyond_end;           /* the allocator went on past the last event of a cut trace */
  uint64_t unreached;       /* a cut trace's last events, made by a call the trace does not have */
  uint32_t ndet, ndet_total;
  rp_detection det[RP_MAX_DET];
  double seconds;
  uint64_t digest;          /* of the emitted events, each with its seq (engine.c, digest_of) */
  int ahead;                /* calls that touched only their thread's cache ran before their turn */
  uint64_t ran_ahead;       /* ... so many events */
  uint64_t rec_base, rep_base;   /* arena bases: recorded, this replay */
  int inj_fired;            /* RP_LENIENT: the injected fault fired (first time, in call order) */
  uint64_t inj_seq, inj_after;   /* ... in the call at this seq, at this count of its site (`@after`) */
  uint32_t inj_tid;         /* ... in this thread */
  /* A forked child's trace replays after its parents' events up to its
   * fork (chain.c): the seqs above are the trace's own; seq_base of the
   * chain's came before it. A divergence in a parent's part: div_parent
   * names that trace, and the divergence's seq is that trace's own. */
  uint64_t seq_base;
  char div_parent[256];
  int rebased;              /* rp_result_rebase has run */
} rp_result;

/* ---- a forked child's trace after its parents' (chain.c) ---- */
#define RP_CHAIN_MAX 16
typedef struct rp_chain {
  unsigned n, cur;                  /* segments, the oldest ancestor first, the trace itself last */
  hkt_reader *rd[RP_CHAIN_MAX];
  uint64_t end[RP_CHAIN_MAX];       /* segment i's events with seq < end[i] (its child's fork) */
  uint64_t base_of[RP_CHAIN_MAX];   /* added to segment i's seqs */
  uint64_t base;                    /* the trace's own seq = the chain's - base */
  char path[RP_CHAIN_MAX][1024];
  char msg[512];                    /* rp_chain_batch's error */
} rp_chain;
/* 0, or -1 with msg set (a file missing or bad, a parent's trace not found). */
int  rp_chain_open(rp_chain *c, const char *path, char *msg, size_t msg_len);
/* Where the parent's trace of `child` (a path; h its header) may be:
 * candidate 0 the path as recorded, 1 a file of that name next to the
 * child's (a recording's traces sit together, and may be moved together).
 * 0 and the path in out; -1 when there is no such candidate. */
int  rp_parent_path(const char *child, const hkt_header *h, unsigned i, char *out, size_t n);
int  rp_chain_batch(rp_chain *c, hkt_event *out, unsigned max);
void rp_chain_close(rp_chain *c);

/* A candidate trace's header config line (not a HAKMEM_ setting): the
 * injected fault's count is held, and from the call at this seq on it fires
 * at the calling thread's next site event (minimize). */
#define RP_INJECT_AT "minimize_inject_at="

/* Run one replay in this process. 0, or an hkt_err when the trace cannot
 * be opened (res->read_msg says why). Threads of the replay are left
 * parked: the caller reports and exits. */
int rp_run(const rp_options *o, rp_result *res);
int64_t rp_last_done(void);
/* A replay's result in the trace's own seqs (a forked child's: rp_result,
 * seq_base), once, before it leaves the replay process. */
void rp_result_rebase(rp_result *r);
int64_t rp_last_done_own(void);
/* A seq of the replay (a forked child's: its parents' first) as the
 * trace's own, or, in a parent's part, as that trace's own with *parent
 * set to its path. */
uint64_t rp_own_seq(uint64_t seq, const char **parent);   /* rp_last_done, as the trace's own seq (-1: none, or a parent's) */
void rp_blocks_rebuild(void);
/* The allocator's state now: live blocks, SuperSlabs, thread caches. */
void rp_dump_state(FILE *f, unsigned max_lines);

/* ---- address map: recorded address -> replay address (addrmap.c) ----
 * Its memory is mmap'ed: never from the allocator under test. One writer
 * at a time (the thread holding the turnstile). */
typedef struct rp_block {
  uint64_t rec, rep, size, seq;
  uint32_t tid, live;
} rp_block;
typedef struct rp_map { rp_block *t; uint64_t cap, n, live; } rp_map;
int       rp_map_init(rp_map *m);
void      rp_map_free(rp_map *m);
rp_block *rp_map_get(rp_map *m, uint64_t rec);
int       rp_map_put(rp_map *m, uint64_t rec, uint64_t rep, uint64_t size, uint64_t seq, uint32_t tid);
void      rp_map_kill(rp_map *m, uint64_t rec);
extern rp_map rp_blocks;   /* the replay's map (engine.c) */

/* ---- replay processes (spawn.c) ---- */
typedef struct rp_child {
  int status;               /* from waitpid */
  int finished;             /* it sent a whole result */
  int crash_sig;            /* it caught this signal (hakmem replays report their crash) */
  int64_t crash_after;      /* ... after replaying this seq */
  uint64_t at_seq;          /* RP_FUNCS: the call in progress when it ended, UINT64_MAX none */
  char err[4096];           /* the tail of its stderr */
} rp_child;
void rp_env_for_hakmem(const hkt_header *h);
void rp_result_write(int fd, const rp_result *r, int crash_sig);
int  rp_spawn(const char *path, const char *mode, const char *preload, double timeout_s,
              const char *record_to, rp_result *res, rp_child *c);
void rp_child_message(const rp_child *c, char *buf, size_t n);
typedef struct rp_server { int pid; FILE *to, *from; } rp_server;
int  rp_server_start(rp_server *s, const char *mode, double timeout_s);
int  rp_server_run(rp_server *s, const char *path, rp_result *res, rp_child *c);
void rp_server_stop(rp_server *s);
int  rp_serve(rp_mode mode, double timeout_s, int (*run)(const char *path, rp_mode mode, double timeout_s));

/* ---- shared helpers ---- */
int  rp_is_call(unsigned kind);
int  rp_det_from_realloc(const hkt_event *det, unsigned last_kind, uint64_t last_ptr);
void rp_event_text(char *buf, size_t n, const hkt_event *e);   /* one line, for reports */
void rp_event_json(FILE *f, const hkt_event *e);

#endif /* HAK_REPLAY_H */
