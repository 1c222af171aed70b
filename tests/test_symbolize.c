/* test_symbolize.c — the symbolizer opened while the pass runs
 * (hka_sym_start / hka_sym_ready) answers exactly as one opened after it
 * (hka_sym_open): for the header's modules, for a module a MODULE_LOAD
 * event adds during the pass, and for addresses in no module; closing one
 * that was never made ready (a failed pass) is clean; and `hakmem analyze`
 * resolves a leak inside a module loaded during the run. The modules are
 * real ELF files of the build (bin/hakmem, lib/libhakmem.so), the addresses
 * their own functions' entry points. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <gelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hakmem/trace.h"
#include "../analyze/analyze.h"

static char tmpdir[64];
static char bin[PATH_MAX], lib[PATH_MAX];

#define BIN_BASE 0x555500000000ull
#define LIB_BASE 0x7f1200000000ull
#define NFUNC 6

/* Up to n defined functions of the ELF at path, spread over its symbol
 * table: their offsets (st_value; PIE and shared objects link at 0). */
static int functions(const char *path, uint64_t *off, int n) {
  elf_version(EV_CURRENT);
  int fd = open(path, O_RDONLY);
  if (fd < 0) return 0;
  Elf *e = elf_begin(fd, ELF_C_READ, NULL);
  uint64_t all[4096];
  int nall = 0;
  for (Elf_Scn *scn = NULL; e && (scn = elf_nextscn(e, scn));) {
    GElf_Shdr sh;
    if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_SYMTAB) continue;
    Elf_Data *d = elf_getdata(scn, NULL);
    for (size_t i = 0; d && nall < 4096 && i < sh.sh_size / sh.sh_entsize; i++) {
      GElf_Sym sym;
      if (gelf_getsym(d, (int)i, &sym) && GELF_ST_TYPE(sym.st_info) == STT_FUNC && sym.st_value && sym.st_size > 8)
        all[nall++] = sym.st_value;
    }
  }
  if (e) elf_end(e);
  close(fd);
  int k = 0;
  for (; k < n && k < nall; k++) off[k] = all[(size_t)k * (size_t)nall / (size_t)n];
  return k;
}

static void add_module(hka_state *s, const char *path, uint64_t base) {
  if (s->nmodules == s->modules_cap) {
    s->modules_cap = s->modules_cap ? 2 * s->modules_cap : 4;
    s->modules = realloc(s->modules, s->modules_cap * sizeof *s->modules);
    assert_non_null(s->modules);
  }
  s->modules[s->nmodules++] = (hka_module){.path = strdup(path), .base = base};
}

static int same_str(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static void assert_same_sym(const hka_sym *a, const hka_sym *b) {
  assert_true(same_str(a->function, b->function));
  assert_true(same_str(a->file, b->file));
  assert_true(same_str(a->module, b->module));
  assert_int_equal(a->line, b->line);
  assert_int_equal(a->offset, b->offset);
}

static void test_started_early_answers_the_same(void **state) {
  (void)state;
  uint64_t fb[NFUNC], fl[NFUNC];
  int nb = functions(bin, fb, NFUNC), nl = functions(lib, fl, NFUNC);
  assert_true(nb >= 3);
  assert_true(nl >= 3);

  hka_state early = {0}, late = {0};
  add_module(&early, bin, BIN_BASE);             /* the header's module */
  hka_symbolizer *ze = hka_sym_start(&early);
  add_module(&early, lib, LIB_BASE);             /* a MODULE_LOAD during the pass */
  hka_sym_ready(ze, &early);
  add_module(&late, bin, BIN_BASE);
  add_module(&late, lib, LIB_BASE);
  hka_symbolizer *zl = hka_sym_open(&late);

  uint64_t addrs[2 * NFUNC + 2];
  int n = 0;
  for (int i = 0; i < nb; i++) addrs[n++] = BIN_BASE + fb[i] + 1;   /* a return address: looked up at -1 */
  for (int i = 0; i < nl; i++) addrs[n++] = LIB_BASE + fl[i] + 1;
  addrs[n++] = 0x1000;                                              /* in no module */
  addrs[n++] = LIB_BASE + fl[0] + 1;                                /* again: from the cache */
  int named_bin = 0, named_lib = 0;
  for (int i = 0; i < n; i++) {
    hka_sym a, b;
    hka_sym_lookup(ze, addrs[i], &a);
    hka_sym_lookup(zl, addrs[i], &b);
    assert_same_sym(&a, &b);
    if (a.function && addrs[i] >= LIB_BASE) named_lib++;
    else if (a.function) named_bin++;
  }
  assert_int_equal(named_bin, nb);               /* every entry point has its name */
  assert_int_equal(named_lib, nl + 1);
  hka_sym lib_sym;
  hka_sym_lookup(ze, LIB_BASE + fl[0] + 1, &lib_sym);
  assert_string_equal(lib_sym.module, "libhakmem.so");
  assert_int_equal(lib_sym.offset, fl[0] + 1);

  hka_sym_close(ze);
  hka_sym_close(zl);
  hka_free(&early);
  hka_free(&late);
}

static void test_closed_before_ready(void **state) {
  (void)state;
  hka_state s = {0};
  add_module(&s, bin, BIN_BASE);
  add_module(&s, lib, LIB_BASE);
  add_module(&s, "/nonexistent/libgone.so", 0x7f3300000000ull);
  for (int i = 0; i < 3; i++) {                  /* closed at once, and after a while */
    hka_symbolizer *z = hka_sym_start(&s);
    assert_non_null(z);
    if (i) usleep(20000 * (useconds_t)i);
    hka_sym_close(z);
  }
  hka_sym_close(NULL);
  hka_sym_ready(NULL, &s);
  hka_free(&s);
}

/* The CLI on a trace whose header lists bin/hakmem and whose MODULE_LOAD
 * adds lib/libhakmem.so: leaks in both resolve to function names. */
static void test_cli_module_loaded_during_run(void **state) {
  (void)state;
  uint64_t fb[1], fl[1];
  assert_int_equal(functions(bin, fb, 1), 1);
  assert_int_equal(functions(lib, fl, 1), 1);
  hka_state ref = {0};
  add_module(&ref, bin, BIN_BASE);
  add_module(&ref, lib, LIB_BASE);
  hka_symbolizer *z = hka_sym_open(&ref);
  hka_sym sb, sl;
  hka_sym_lookup(z, BIN_BASE + fb[0] + 1, &sb);
  hka_sym_lookup(z, LIB_BASE + fl[0] + 1, &sl);
  assert_non_null(sb.function);
  assert_non_null(sl.function);

  char trace[PATH_MAX], out[PATH_MAX];
  snprintf(trace, sizeof trace, "%s/mod.hkt.zst", tmpdir);
  snprintf(out, sizeof out, "%s/mod.txt", tmpdir);
  hkt_module hm = {.path = bin, .base = BIN_BASE};
  hkt_header h = {.version = HKT_FORMAT_VERSION, .pid = 1, .clock = "monotonic", .cmdline = "./mod",
                  .config = "", .arena_base = 0x200000000000ull, .num_classes = 8,
                  .class_size = {8, 16, 32, 64, 128, 256, 512, 1024}, .num_modules = 1, .modules = &hm};
  hkt_writer *w;
  assert_int_equal(hkt_writer_open(&w, trace, &h), 0);
  uint64_t seq = 0;
  hkt_event evs[] = {
    {.kind = HKT_EV_THREAD_START, .tid = 0, .aux = 7, .cls = HKT_NO_CLASS},
    {.kind = HKT_EV_MALLOC, .tid = 0, .ptr = 0x300000000040ull, .size = 100, .cls = HKT_NO_CLASS,
     .caller = BIN_BASE + fb[0] + 1},
    {.kind = HKT_EV_MODULE_LOAD, .tid = HKT_TID_RECORDER, .ptr = LIB_BASE, .str = lib, .cls = HKT_NO_CLASS},
    {.kind = HKT_EV_MALLOC, .tid = 0, .ptr = 0x300000001000ull, .size = 300, .cls = HKT_NO_CLASS,
     .caller = LIB_BASE + fl[0] + 1},
    {.kind = HKT_EV_END, .tid = 0, .fn = HKT_END_EXIT, .cls = HKT_NO_CLASS},
  };
  for (size_t i = 0; i < sizeof evs / sizeof *evs; i++) {
    evs[i].seq = seq++;
    evs[i].time_ns = seq * 1000;
    assert_int_equal(hkt_writer_put(w, &evs[i]), 0);
  }
  assert_int_equal(hkt_writer_close(w, 1), 0);

  char cmd[4 * PATH_MAX];
  const char *build = getenv("HAKMEM_BUILD") ? getenv("HAKMEM_BUILD") : "build";
  snprintf(cmd, sizeof cmd, "'%s/bin/hakmem' analyze '%s' -o '%s'", build, trace, out);
  assert_int_equal(system(cmd), 0);
  FILE *f = fopen(out, "r");
  assert_non_null(f);
  char line[1024];
  int found_bin = 0, found_lib = 0;
  while (fgets(line, sizeof line, f)) {
    found_lib += strstr(line, " 300 ") && strstr(line, sl.function);   /* "bytes blocks function (...)" */
    found_bin += strstr(line, " 100 ") && strstr(line, sb.function);
  }
  fclose(f);
  assert_int_equal(found_bin, 1);
  assert_int_equal(found_lib, 1);
  hka_sym_close(z);
  hka_free(&ref);
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof tmpdir, "/tmp/hkt-symbolize-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  const char *build = getenv("HAKMEM_BUILD") ? getenv("HAKMEM_BUILD") : "build";
  char cwd[PATH_MAX - 64];
  if (!getcwd(cwd, sizeof cwd)) return -1;
  snprintf(bin, sizeof bin, "%s/%s/bin/hakmem", cwd, build);
  snprintf(lib, sizeof lib, "%s/%s/lib/libhakmem.so", cwd, build);
  return access(bin, R_OK) || access(lib, R_OK) ? -1 : 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_started_early_answers_the_same),
    cmocka_unit_test(test_closed_before_ready),
    cmocka_unit_test(test_cli_module_loaded_during_run),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
