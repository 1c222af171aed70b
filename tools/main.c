/* main.c — the `hakmem` command: help, version, and dispatch to cmd_<name>.
 *
 * The help texts live in help.c, so `hakmem help CMD` works even for a
 * command that is not built in. Commands written in other files are weak
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

/* What runs each command; the help texts are in help.c. */
typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
} command;

static const command commands[] = {
  {"record", cmd_record},   {"recover", cmd_recover}, {"stats", cmd_stats},
  {"dump", cmd_dump},       {"verify", cmd_verify},   {"replay", cmd_replay},
  {"minimize", cmd_minimize}, {"analyze", cmd_analyze}, {"import", cmd_import},
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
  for (size_t i = 0; i < NUM_COMMANDS; i++) {
    const cli_command_help *h = cli_find_help(commands[i].name);
    fprintf(f, "  %-10s %s%s\n", commands[i].name, h ? h->summary : "",
            commands[i].run ? "" : " (not built in)");
  }
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
  int rc = cli_help(name);
  if (!c->run) printf("\n(%s is not built in this version)\n", c->name);
  return rc;
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
