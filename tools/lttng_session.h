/* lttng_session.h — LTTng from the hakmem command: a session daemon (the
 * running one or our own), a recording session around a command, and the
 * CTF importer that turns the `hakmem` tracepoints back into a .hkt.zst.
 *
 * The lttng(1) command is driven by fork/exec, exactly as a user would type
 * it (docs/lttng.md lists the same commands). Functions return 0 or a
 * negative hkt_err and print their own one-line error, prefixed by `cmd`. */
#ifndef HAKMEM_LTTNG_SESSION_H
#define HAKMEM_LTTNG_SESSION_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

/* A session daemon to talk to. When none runs, we start our own with its
 * own run directory: as root in a private mount namespace where a
 * directory of ours is /run/lttng (root's run directory is fixed), as
 * another user through LTTNG_HOME; it is stopped by pid afterwards. */
typedef struct hkl_daemon {
  const char *cmd;          /* "record", "test", ...: prefix of error lines */
  char dir[PATH_MAX];       /* our work directory (logs, run dir, home) */
  pid_t pid;                /* our own lttng-sessiond, 0 if we use a running one */
} hkl_daemon;

/* force_own: start our own daemon even if one runs (needs a private mount
 * namespace as root; the calling process must be single-threaded). */
int  hkl_daemon_start(hkl_daemon *d, const char *cmd, const char *workdir, int force_own);
void hkl_daemon_stop(hkl_daemon *d);

/* Runs `lttng ARGS...` (NULL-terminated); its output goes to DIR/lttng.log.
 * Returns 0 on success, else prints "hakmem CMD: lttng ARG0 ...: last line"
 * and returns HKT_ERR_IO. */
int  hkl_lttng(const hkl_daemon *d, const char *const *args);

/* A recording session with one user-space channel `hakmem`:
 * - normal: blocking (--blocking-timeout=inf), large sub-buffers, nothing
 *   is dropped (the traced program needs LTTNG_UST_ALLOW_BLOCKING=1);
 * - snapshot: a flight recorder (overwrite mode) written out by
 *   hkl_session_finish(), after the program exited or crashed.
 * `events` is an enable-event pattern ("hakmem:*"); the vpid, vtid and ip
 * contexts are added. The CTF trace goes to `ctf_dir`. */
typedef struct hkl_session {
  const hkl_daemon *d;
  char name[64];
  char ctf_dir[PATH_MAX];
  int snapshot, started;
} hkl_session;

int hkl_session_start(hkl_session *s, const hkl_daemon *d, const char *ctf_dir,
                      int snapshot, const char *events);
int hkl_session_finish(hkl_session *s);  /* snapshot if asked, stop, destroy */

/* ---- CTF import --------------------------------------------------------- */

#define HKL_DEFAULT_WINDOW (1u << 20)  /* reorder window, events */

typedef struct hkl_import_opts {
  const char *cmd;          /* "import" or "record": prefix of error lines */
  int pid;                  /* the process to import; 0: the first one traced */
  uint64_t window;          /* reorder window in events; 0: HKL_DEFAULT_WINDOW */
  int end_how;              /* enum hkt_end to add when the trace has no END; 0 none */
  uint64_t end_status;      /* exit status or signal for end_how */
  int quiet;                /* no summary line */
} hkl_import_opts;

typedef struct hkl_import_result {
  uint64_t events;          /* written to the .hkt.zst */
  uint64_t ctf_events;      /* hakmem:* events read (all processes) */
  uint64_t other_events;    /* events of other providers, ignored */
  uint64_t other_pid_events;/* hakmem events of other processes, ignored */
  uint64_t discarded;       /* events LTTng reported discarded (+ lost packets) */
  uint64_t missing;         /* seq numbers never seen */
  uint32_t pid;
  double secs;
} hkl_import_result;

/* Converts the CTF trace(s) under ctf_dir into `out` (written to out.part,
 * renamed at the end). 0: whole; HKT_ERR_SEQUENCE: events were lost (the
 * trace holds those before the first missing one and is marked incomplete);
 * other negative codes: nothing usable, `out` untouched. */
int hkl_import(const char *ctf_dir, const char *out, const hkl_import_opts *o,
               hkl_import_result *res);

/* `hakmem record --lttng [--snapshot] [-o FILE] [--ctf DIR] -- CMD [ARGS...]`
 * (argv[0] is the command name; --lttng itself is accepted and ignored). */
int hak_lttng_record(int argc, char **argv);
/* `hakmem import CTF_DIR [-o FILE] [--pid PID] [--window N]` */
int cmd_import(int argc, char **argv);

#endif /* HAKMEM_LTTNG_SESSION_H */
