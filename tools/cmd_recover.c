/* cmd_recover.c — `hakmem recover SPOOL [-o FILE]`: finish the trace of a
 * recorded process that died without finishing it (SIGKILL, or a crash the
 * in-process handler could not complete), from the events its spool still
 * holds. The whole frames already in the trace are kept; the rest comes
 * from the spool, then END (how the run ended: unknown, unless the process
 * recorded its own end) and the end frame. The spool is removed after. */
#include <getopt.h>
#include <signal.h>
#include "cli.h"
#include "spool.h"

int cmd_recover(int argc, char **argv) {
  if (cli_help_requested(argc, argv)) return cli_help("recover");
  static const struct option opts[] = {
    { "output", required_argument, NULL, 'o' },
    { "force", no_argument, NULL, 'f' },
    { NULL, 0, NULL, 0 },
  };
  const char *out = NULL;
  int force = 0, c;
  optind = 1;
  opterr = 0;
  while ((c = getopt_long(argc, argv, ":o:", opts, NULL)) != -1) {
    if (c == 'o') out = optarg;
    else if (c == 'f') force = 1;
    else return cli_bad_option("recover", c, argv, optind);
  }
  if (optind != argc - 1) return cli_usage("recover", optind == argc ? "missing SPOOL" : "one SPOOL at a time");
  const char *spool = argv[optind];

  char why[600];
  hkt_spool s;
  int e = hkt_spool_map(&s, spool, why, sizeof why);
  if (HKT_IS_ERR(e)) { cli_err("recover", "%s: %s", spool, why); return CLI_EXIT_USAGE; }
  pid_t pid = (pid_t)s.h->pid;
  uint32_t state = atomic_load(&s.h->state);
  hkt_spool_unmap(&s);
  if (state != HKT_SPOOL_DONE && !force && pid > 0 && kill(pid, 0) == 0) {
    cli_err("recover", "%s: process %d still runs and may be recording; use --force to finish it anyway",
            spool, (int)pid);
    return CLI_EXIT_USAGE;
  }
  hkt_recover_info info;
  e = hkt_recover(spool, out, HKT_END_UNKNOWN, 0, &info, why, sizeof why);
  if (HKT_IS_ERR(e)) {
    cli_err("recover", "%s: %s", spool, why);
    return e == HKT_ERR_IO ? CLI_EXIT_PROBLEM : CLI_EXIT_USAGE;
  }
  printf("%s: %llu events (%llu from the spool), end %s", info.trace_path,
         (unsigned long long)(info.events_before + info.events_added + 1),
         (unsigned long long)info.events_added, hkt_end_name(info.end_kind));
  if (info.end_kind == HKT_END_EXIT) printf(" status %u", info.end_status);
  if (info.end_kind == HKT_END_SIGNAL) printf(" signal %u (%s)", info.end_status, strsignal((int)info.end_status));
  putchar('\n');
  return CLI_EXIT_OK;
}
