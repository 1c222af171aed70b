/* main.c — the `hakmem` command: help, version, and dispatch to cmd_<name>.
 *
 * Every command's help text lives here, so `hakmem help CMD` works even for
 * a command that is not built in. Commands written in other files are weak
 * references: the binary links while they are missing and says so. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

#ifndef HAKMEM_VERSION
#define HAKMEM_VERSION "0.1.0"
#endif

int cmd_stats(int argc, char **argv);
int cmd_dump(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_record(int argc, char **argv) __attribute__((weak));
int cmd_recover(int argc, char **argv) __attribute__((weak));
int cmd_replay(int argc, char **argv) __attribute__((weak));
int cmd_minimize(int argc, char **argv) __attribute__((weak));
int cmd_analyze(int argc, char **argv) __attribute__((weak));
int cmd_import(int argc, char **argv) __attribute__((weak));

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
  const char *help;             /* usage line(s), then flags */
} command;

static const command commands[] = {
  {"record", cmd_record, "run a program on hakmem, recording every allocator event",
   "usage: hakmem record [-o FILE] [--backtrace N] [--lttng [--snapshot]] -- CMD [ARGS...]\n"
   "\n"
   "Runs CMD with libhakmem.so preloaded and recording on. Each process gets\n"
   "its own trace (a forked child or an exec'd image writes a new file).\n"
   "Exits with CMD's status (128+N if it died of signal N).\n"
   "\n"
   "  -o FILE          trace file (default hakmem-<pid>.hkt.zst)\n"
   "  --backtrace N    also record call stacks of up to N frames (deduplicated)\n"
   "  --lttng          record through an LTTng-UST session, then import it\n"
   "  --snapshot       with --lttng: flight-recorder session, snapshot at exit or crash\n"
   "  -h, --help       this help\n"
   "\n"
   "Without the front end: LD_PRELOAD=libhakmem.so HAKMEM_TRACE=FILE CMD\n"},
  {"recover", cmd_recover, "finish the trace of a recorder that died, from its spool",
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
  {"stats", cmd_stats, "counts, threads, duration, bytes per event, how the run ended",
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
  {"dump", cmd_dump, "print events as text or JSON lines, filtered",
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
  {"verify", cmd_verify, "check that a trace is whole and consistent",
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
  {"replay", cmd_replay, "re-run a trace's calls, deterministically, and compare",
   "usage: hakmem replay FILE [--against hakmem|system|/path/lib.so] [--repeat N] [--json] [--stop-at SEQ] [--timeout S]\n"
   "\n"
   "One replay thread per recorded thread, events released in sequence order.\n"
   "Against hakmem (default) addresses and internal events must be identical;\n"
   "the first divergence is reported with its sequence number.\n"
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
  {"minimize", cmd_minimize, "shrink a trace to the smallest one that shows the same bug",
   "usage: hakmem minimize FILE -o OUT [--emit-c OUT.c]\n"
   "\n"
   "Delta debugging over events, keeping the trace valid (allocs before their\n"
   "frees, thread start and exit, realloc chains) and the same first detection.\n"
   "\n"
   "  -o OUT           the minimized trace\n"
   "  --emit-c OUT.c   also write a standalone C program making the same calls\n"
   "  -h, --help       this help\n"},
  {"analyze", cmd_analyze, "lifecycle correlation report: detections, SuperSlabs, leaks",
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
  {"import", cmd_import, "convert an LTTng (CTF) trace of hakmem events",
   "usage: hakmem import LTTNG_TRACE_DIR [-o FILE] [--pid PID] [--window N]\n"
   "\n"
   "Reads the CTF trace with libbabeltrace2 and writes the same .hkt.zst\n"
   "format as the built-in recorder. Discarded events are counted and reported.\n"
   "\n"
   "  -o FILE          the trace to write (default hakmem-PID.hkt.zst)\n"
   "  --pid PID        the process to take, when the session traced several\n"
   "  --window N       how far (in events) seq order may differ from timestamp order\n"
   "  -h, --help       this help\n"},
};
#define NUM_COMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name) {
  for (size_t i = 0; i < NUM_COMMANDS; i++)
    if (!strcmp(commands[i].name, name)) return &commands[i];
  return NULL;
}

static void print_usage(FILE *f) {
  fprintf(f,
          "usage: hakmem COMMAND [ARGS...]\n"
          "       hakmem help COMMAND | hakmem COMMAND --help | hakmem --version\n"
          "\n"
          "hakmem is a SuperSlab malloc that records, replays and explains its own\n"
          "allocations. Commands:\n\n");
  for (size_t i = 0; i < NUM_COMMANDS; i++)
    fprintf(f, "  %-10s %s%s\n", commands[i].name, commands[i].summary,
            commands[i].run ? "" : " (not built in)");
  fprintf(f,
          "\n"
          "Without the front end: LD_PRELOAD=libhakmem.so PROGRAM  (plain allocator)\n"
          "Exit codes: 0 success, 1 problems found in the input, 2 bad usage or\n"
          "unreadable input. See docs/cli.md.\n");
}

static int help_for(const char *name) {
  const command *c = find_command(name);
  if (!c) {
    fprintf(stderr, "hakmem help: %s: no such command (try 'hakmem --help')\n", name);
    return CLI_EXIT_USAGE;
  }
  fputs(c->help, stdout);
  if (!c->run) printf("\n(%s is not built in this version)\n", c->name);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *name = argv[1];
  if (!strcmp(name, "--help") || !strcmp(name, "-h")) {
    print_usage(stdout);
    return 0;
  }
  if (!strcmp(name, "--version") || !strcmp(name, "-V")) {
    printf("hakmem %s (trace format %d)\n", HAKMEM_VERSION, HKT_FORMAT_VERSION);
    return 0;
  }
  if (!strcmp(name, "help")) {
    if (argc < 3) { print_usage(stdout); return 0; }
    return help_for(argv[2]);
  }
  const command *c = find_command(name);
  if (!c) {
    fprintf(stderr, "hakmem: %s: no such command (try 'hakmem --help')\n", name);
    return CLI_EXIT_USAGE;
  }
  /* `hakmem CMD --help` (before any "--", so `record -- prog --help` runs prog) */
  if (cli_help_requested(argc - 1, argv + 1)) return help_for(name);
  if (!c->run) {
    fprintf(stderr, "hakmem: %s is not built in this version\n", name);
    return CLI_EXIT_USAGE;
  }
  fflush(stdout);
  return c->run(argc - 1, argv + 1);
}
