/* cmd_import.c — `hakmem import CTF_DIR [-o FILE] [--pid PID] [--window N]`:
 * the command around hkl_import() (tools/lttng_import.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hakmem/trace.h"
#include "cli.h"
#include "lttng_session.h"


static int hkl_number(const char *s, unsigned long long *v) {
  char *end;
  errno = 0;
  *v = strtoull(s, &end, 0);
  return errno || end == s || *end || s[0] == '-';
}

int cmd_import(int argc, char **argv) {
  const char *dir = NULL, *out = NULL;
  hkl_import_opts o = { .cmd = "import" };
  unsigned long long v;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) return cli_help("import");
    if ((!strcmp(a, "-o") || !strcmp(a, "--pid") || !strcmp(a, "--window")) && i + 1 < argc) {
      const char *val = argv[++i];
      if (a[1] == 'o') { out = val; continue; }
      if (hkl_number(val, &v) || (a[2] == 'p' && v > 0x7fffffff)) {
        fprintf(stderr, "hakmem import: %s %s: not a number\n", a, val);
        return 2;
      }
      if (a[2] == 'p') o.pid = (int)v; else o.window = v;
      continue;
    }
    if (a[0] == '-' && a[1]) {
      char what[160];
      snprintf(what, sizeof what, "%s: unknown option or missing value", a);
      return cli_usage("import", what);
    }
    if (dir) {
      fprintf(stderr, "hakmem import: %s: one CTF directory at a time\n", a);
      return 2;
    }
    dir = a;
  }
  if (!dir) return cli_usage("import", "which LTTng trace directory?");
  char def[64];
  if (!out) {
    /* The pid is known only after reading: import, then name. */
    snprintf(def, sizeof def, "hakmem-import-%d.hkt.zst", (int)getpid());
    out = def;
  }
  hkl_import_result r;
  int rc = hkl_import(dir, out, &o, &r);
  if (rc && rc != HKT_ERR_SEQUENCE) return 1;
  char named[96];
  if (out == def) {
    snprintf(named, sizeof named, "hakmem-%u.hkt.zst", r.pid);
    if (rename(def, named) == 0) out = named;
  }
  printf("hakmem import: %s: %llu events of pid %u from %s in %.2f s (%.0f events/s)\n", out,
         (unsigned long long)r.events, r.pid, dir, r.secs, r.secs > 0 ? (double)r.events / r.secs : 0.0);
  return rc ? 1 : 0;
}
