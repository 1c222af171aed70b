/* help.c — every command's summary and help text, in one place.
 *
 * `hakmem --help`, `hakmem help CMD` and `hakmem CMD --help` all print from
 * this table (main.c for the first two; each cmd_<name> for the last, so a
 * command called directly, as the tests do, answers the same). */
#include <stdio.h>
#include <string.h>

#include "cli.h"

const cli_command_help cli_commands[] = {
  {"record", "run a program on hakmem, recording every allocator event",
   "usage: hakmem record [-o FILE] [--backtrace N] [--lttng [--snapshot]] -- CMD [ARGS...]\n"
   "\n"
   "Runs CMD with libhakmem.so preloaded and recording on. Each process gets\n"
   "its own trace (a forked child or an exec'd image writes a new file; a\n"
   "child's names its parent's, which replay, analyze and verify read up to\n"
   "the fork). On stderr, each trace with its events and how it ended.\n"
   "Exits with CMD's status (128+N if it died of signal N).\n"
   "\n"
   "  -o FILE          trace file (default hakmem-<pid>.hkt.zst)\n"
   "  --backtrace N    also record call stacks of up to N frames (deduplicated)\n"
   "  --lttng          record through an LTTng-UST session, then import it\n"
   "  --snapshot       with --lttng: flight-recorder session, snapshot at exit or crash\n"
   "  -h, --help       this help\n"
   "\n"
   "Without the front end: LD_PRELOAD=libhakmem.so HAKMEM_TRACE=FILE CMD\n"},
  {"recover", "finish the trace of a recorder that died, from its spool",
   "usage: hakmem recover SPOOL [-o FILE] [--force]\n"
   "\n"
   "Finishes the trace of a recording whose process died, from its spool\n"
   "(FILE.spool next to the trace); how the run ended is 'unknown'. Without\n"
   "-o the trace named in the spool is completed in place; with -o FILE a\n"
   "completed copy is written instead.\n"
   "\n"
   "  -o FILE          the trace to write\n"
   "  --force          even if the recorded process still seems to run\n"
   "  -h, --help       this help\n"},
  {"stats", "counts, threads, duration, bytes per event, how the run ended",
   "usage: hakmem stats FILE [--json]\n"
   "\n"
   "Reads the whole trace once: events per kind, detections per kind,\n"
   "threads, duration, bytes on disk and per event, whether the trace is\n"
   "complete (end frame seen) and how the run ended.\n"
   "\n"
   "  --json           one JSON object (schema in docs/cli.md)\n"
   "  -h, --help       this help\n"
   "\n"
   "Exit: 0 read to a clean end; 1 the trace stops at an error (cut inside a\n"
   "frame, corrupt): what was read is printed, and one line on stderr;\n"
   "2 unreadable file or bad usage.\n"},
  {"dump", "print events as text or JSON lines, filtered",
   "usage: hakmem dump FILE [--json] [--tid T] [--ptr ADDR] [--from SEQ] [--to SEQ] [--kind K[,K...]]\n"
   "\n"
   "One line per event: seq, time (s since start), thread, kind, fields, caller.\n"
   "Filters combine (an event is shown if it passes all of them).\n"
   "\n"
   "  --json           JSON lines, one object per event (schema in docs/cli.md)\n"
   "  --tid T          only events of thread index T\n"
   "  --ptr ADDR       the history of one address: every event naming the block\n"
   "                   that holds ADDR, and the SuperSlab (or large mapping) that\n"
   "                   held it: register, adopt, abandon, unregister\n"
   "  --from SEQ       from sequence number SEQ on\n"
   "  --to SEQ         up to sequence number SEQ (inclusive)\n"
   "  --kind K,...     only these kinds (malloc, free, ss_register, ...)\n"
   "  -h, --help       this help\n"
   "\n"
   "Numbers are decimal or 0x-hex. Exit codes as for stats.\n"},
  {"verify", "check that a trace is whole and consistent",
   "usage: hakmem verify FILE\n"
   "\n"
   "Checks, in one pass and in memory bounded by the live blocks: the end\n"
   "frame is there; sequence numbers run from 0 without gaps; every free and\n"
   "realloc names a live block (unless the allocator reported a detection for\n"
   "it); no allocation returns a live address; every tiny/mid block lies in a\n"
   "registered SuperSlab; SuperSlabs do not overlap and are not unregistered\n"
   "with live blocks; threads start before, and make no calls after, they exit.\n"
   "Prints one line per problem (the first 20), then a summary line.\n"
   "\n"
   "  -h, --help       this help\n"
   "\n"
   "Exit: 0 whole and consistent; 1 problems found; 2 unreadable file or bad usage.\n"},
  {"replay", "re-run a trace's calls, deterministically, and compare",
   "usage: hakmem replay FILE [--against hakmem|system|/path/lib.so] [--repeat N] [--json] [--stop-at SEQ] [--timeout S]\n"
   "\n"
   "One replay thread per recorded thread, events released in sequence order.\n"
   "Against hakmem (default) addresses and internal events must be identical;\n"
   "the first divergence is reported with its sequence number. Calls that\n"
   "touched only their thread's cache run before their turn (every decision\n"
   "other threads can see is still made in order); HAKMEM_REPLAY_STRICT=1\n"
   "releases every event at its turn.\n"
   "\n"
   "A forked child's trace replays after its parent's events up to the fork\n"
   "(its heap started as the parent's): the parent's trace must be where the\n"
   "child's header says, or next to the child's. Seqs stay the child's own.\n"
   "\n"
   "  --against A      hakmem (default), system (glibc), or a preloadable .so\n"
   "  --repeat N       replay N times; report whether all runs were identical\n"
   "  --json           one JSON object (events, threads, identical,\n"
   "                   first_divergence, detections, events_per_s)\n"
   "  --stop-at SEQ    stop just before event SEQ (SIGTRAP under a debugger)\n"
   "  --timeout S      seconds a replay may stall before it is called hung (default 10)\n"
   "  -h, --help       this help\n"
   "\n"
   "Exit: 0 identical, 1 diverged, 2 error, 3 the recorded bug reproduced\n"
   "(docs/replay.md).\n"},
  {"minimize", "shrink a trace to the smallest one that shows the same bug",
   "usage: hakmem minimize FILE -o OUT [--emit-c OUT.c] [--max-time S] [--keep-config]\n"
   "\n"
   "Delta debugging over events, keeping the trace valid (allocs before their\n"
   "frees, thread start and exit, realloc chains) and the same first detection.\n"
   "\n"
   "  -o OUT           the minimized trace\n"
   "  --emit-c OUT.c   also write a standalone C program making the same calls\n"
   "  --max-time S     stop after S seconds (default 60) with the smallest trace\n"
   "                   found so far that still shows the bug (and say so)\n"
   "  --keep-config    keep the input's configuration (by default a smaller\n"
   "                   cache, HAKMEM_TCACHE, is tried)\n"
   "  -h, --help       this help\n"},
  {"analyze", "lifecycle correlation report: detections, SuperSlabs, leaks",
   "usage: hakmem analyze FILE [--format text|json|html|perfetto] [-o OUT] [--stable]\n"
   "\n"
   "One pass, memory bounded by live blocks: summary, per-class use, SuperSlab\n"
   "lifecycles, stale-pointer correlation, leaks by callsite, cross-thread\n"
   "frees, live bytes over time.\n"
   "\n"
   "  -f, --format F   text (default), json (docs/report-schema.md), html (one\n"
   "                   self-contained file with SVG charts), perfetto (Chrome\n"
   "                   trace-event JSON for ui.perfetto.dev)\n"
   "  -o, --output OUT write the report to OUT (default: standard output)\n"
   "      --stable     text and json: leave out times, pid, thread ids, load addresses\n"
   "                   and directories, for comparing reports (docs/analyze.md)\n"
   "  -h, --help       this help\n"},
  {"import", "convert an LTTng (CTF) trace of hakmem events",
   "usage: hakmem import LTTNG_TRACE_DIR [-o FILE] [--pid PID] [--window N]\n"
   "\n"
   "Reads the CTF trace with libbabeltrace2 and writes the same .hkt.zst\n"
   "format as the built-in recorder. Discarded events are counted and reported.\n"
   "\n"
   "  -o FILE          the trace to write (default hakmem-PID.hkt.zst)\n"
   "  --pid PID        the process to take, when the session traced several\n"
   "  --window N       how far (in events) seq order may differ from timestamp order\n"
   "                   (default 1048576)\n"
   "  -h, --help       this help\n"},
  {NULL, NULL, NULL},
};

const cli_command_help *cli_find_help(const char *name) {
  for (const cli_command_help *c = cli_commands; c->name; c++)
    if (!strcmp(c->name, name)) return c;
  return NULL;
}

int cli_help(const char *name) {
  const cli_command_help *c = cli_find_help(name);
  if (!c) {
    fprintf(stderr, "hakmem help: %s: no such command (try 'hakmem --help')\n", name);
    return CLI_EXIT_USAGE;
  }
  fputs(c->help, stdout);
  return CLI_EXIT_OK;
}
