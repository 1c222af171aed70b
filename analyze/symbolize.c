/* symbolize.c — caller addresses to function, file and line with elfutils'
 * libdwfl, offline: the modules are the ones the trace's header and
 * MODULE_LOAD events list (path, load base, build-id), opened from disk only
 * when their build-id still matches, so a rebuilt binary gives module+offset
 * instead of wrong lines. Results are cached per address.
 *
 * Opening is the slow part (libc's separate debug info has compressed
 * sections that libdw inflates whole: ~55 ms), so it starts on a thread of
 * its own as soon as the header's modules are known (hka_sym_start) and runs
 * while the pass does; hka_sym_ready joins it after the pass and adds the
 * modules that MODULE_LOAD events listed, in the same order as a symbolizer
 * opened at the end would have them, so every lookup answers the same. */
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "analyze.h"

struct hka_symbolizer {
  Dwfl *dwfl;
  const hka_state *s;
  hka_map cache;                    /* addr -> index + 1 into res */
  hka_sym *res;
  size_t n, cap;
  /* start-up: the header's modules, copied (s->modules grows in the pass) */
  hka_module *early;
  uint32_t nearly;
  uint32_t nreported;               /* s->modules[0, nreported) are in dwfl */
  int threaded;                     /* thread runs start_up; joined by hka_sym_ready */
  pthread_t thread;
  atomic_int stop;                  /* ready or close came: warm no more modules */
};

static char *debuginfo_path;
static const Dwfl_Callbacks callbacks = {
  .find_elf = dwfl_build_id_find_elf,
  .find_debuginfo = dwfl_standard_find_debuginfo,
  .section_address = dwfl_offline_section_address,
  .debuginfo_path = &debuginfo_path,
};

/* 1 if the file at path is an ELF whose build-id is bid (or the trace has
 * none to compare); *is_exec set for ET_EXEC. */
static int file_matches(const hka_module *m, int *is_exec) {
  int fd = open(m->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  int ok = 0;
  Elf *elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
  GElf_Ehdr eh;
  if (elf && elf_kind(elf) == ELF_K_ELF && gelf_getehdr(elf, &eh)) {
    *is_exec = eh.e_type == ET_EXEC;
    const void *bid = NULL;
    ssize_t n = dwelf_elf_gnu_build_id(elf, &bid);
    ok = !m->build_id_len || (n == (ssize_t)m->build_id_len && !memcmp(bid, m->build_id, (size_t)n));
  }
  if (elf) elf_end(elf);
  close(fd);
  return ok;
}

static void report_modules(Dwfl *dwfl, const hka_module *mods, uint32_t from, uint32_t to) {
  for (uint32_t i = from; i < to; i++) {
    const hka_module *m = &mods[i];
    int is_exec = 0;
    if (!m->path || !*m->path || !file_matches(m, &is_exec)) continue;
    dwfl_report_elf(dwfl, m->path, m->path, -1, is_exec ? 0 : m->base, false);
  }
}

/* Whether m's debug info is worth opening ahead: it is on this machine
 * and opening it costs, that is compressed in the file itself, or in a file
 * of its own at its build-id's path or through its debuglink in the usual
 * places. Only a hint (a miss leaves the work to the lookups): debug info
 * uncompressed in the file is mapped, not read, so opening it ahead would
 * only add memory; looking for debug info that is not here loads
 * libdebuginfod and its ~25 libraries, wasted when no lookup needs it. */
static int worth_warming(Dwfl_Module *m, const char *path) {
  Dwarf_Addr bias;
  Elf *elf = dwfl_module_getelf(m, &bias);
  size_t shstr;
  if (!elf || elf_getshdrstrndx(elf, &shstr)) return 0;
  for (Elf_Scn *scn = NULL; (scn = elf_nextscn(elf, scn));) {
    GElf_Shdr sh;
    const char *name = gelf_getshdr(scn, &sh) ? elf_strptr(elf, shstr, sh.sh_name) : NULL;
    if (name && (!strcmp(name, ".debug_info") || !strcmp(name, ".zdebug_info")) && sh.sh_type != SHT_NOBITS)
      return (sh.sh_flags & SHF_COMPRESSED) || name[1] == 'z';
  }
  char buf[4096];
  const unsigned char *bid;
  GElf_Addr vaddr;
  int n = dwfl_module_build_id(m, &bid, &vaddr);
  if (n > 1) {
    int k = snprintf(buf, sizeof buf, "/usr/lib/debug/.build-id/%02x/", bid[0]);
    for (int i = 1; i < n && k < (int)sizeof buf - 8; i++) k += snprintf(buf + k, sizeof buf - (size_t)k, "%02x", bid[i]);
    snprintf(buf + k, sizeof buf - (size_t)k, ".debug");
    if (!access(buf, R_OK)) return 1;
  }
  GElf_Word crc;
  const char *link = dwelf_elf_gnu_debuglink(elf, &crc);
  const char *slash = path ? strrchr(path, '/') : NULL;
  if (!link || !slash) return 0;
  int dlen = (int)(slash - path);
  snprintf(buf, sizeof buf, "%.*s/%s", dlen, path, link);
  if (strcmp(buf, path) && !access(buf, R_OK)) return 1;
  snprintf(buf, sizeof buf, "%.*s/.debug/%s", dlen, path, link);
  if (!access(buf, R_OK)) return 1;
  snprintf(buf, sizeof buf, "/usr/lib/debug%.*s/%s", dlen, path, link);
  return !access(buf, R_OK);
}

/* Load what a lookup in module m would load first: its debug info (found,
 * opened, sections inflated), its symbol table and its address ranges.
 * Done for every module worth it, as which ones the report needs is only
 * known after the pass. Loading is all it does: what the
 * lookups answer does not depend on it. */
static int warm(Dwfl_Module *m, void **ud, const char *name, Dwarf_Addr base, void *arg) {
  hka_symbolizer *z = arg;
  if (atomic_load_explicit(&z->stop, memory_order_relaxed)) return DWARF_CB_ABORT;
  if (!worth_warming(m, name)) return DWARF_CB_OK;
  Dwarf_Addr bias;
  dwfl_module_getdwarf(m, &bias);
  dwfl_module_getsymtab(m);
  dwfl_module_addrname(m, base);    /* sorts the symbol table */
  dwfl_module_addrdie(m, base, &bias);   /* reads the address ranges */
  return DWARF_CB_OK;
}

static void *start_up(void *arg) {
  hka_symbolizer *z = arg;
  z->dwfl = dwfl_begin(&callbacks);
  if (!z->dwfl) return NULL;        /* module+offset only */
  dwfl_report_begin(z->dwfl);
  report_modules(z->dwfl, z->early, 0, z->nearly);
  dwfl_report_end(z->dwfl, NULL, NULL);
  /* With debuginfod on, warming would fetch debug info of modules no
   * lookup needs: leave those to the lookups, as before. */
  const char *urls = getenv("DEBUGINFOD_URLS");
  if (!urls || !*urls) dwfl_getmodules(z->dwfl, warm, z, 0);
  return NULL;
}

static void free_early(hka_symbolizer *z) {
  for (uint32_t i = 0; i < z->nearly; i++) free(z->early[i].path);
  free(z->early);
  z->early = NULL;
  z->nearly = 0;
}

/* A symbolizer with a copy of the header's modules, not yet opened. */
static hka_symbolizer *sym_new(const hka_state *s) {
  hka_symbolizer *z = calloc(1, sizeof *z);
  if (!z) return NULL;
  z->s = s;
  elf_version(EV_CURRENT);
  z->early = s->nmodules ? calloc(s->nmodules, sizeof *z->early) : NULL;
  if (s->nmodules && !z->early) { free(z); return NULL; }
  for (uint32_t i = 0; i < s->nmodules; i++) {
    z->early[i] = s->modules[i];
    z->early[i].path = s->modules[i].path ? strdup(s->modules[i].path) : NULL;
    z->nearly++;
    if (s->modules[i].path && !z->early[i].path) { free_early(z); free(z); return NULL; }
  }
  z->nreported = z->nearly;
  return z;
}

hka_symbolizer *hka_sym_start(const hka_state *s) {
  hka_symbolizer *z = sym_new(s);
  if (!z) return NULL;
  z->threaded = pthread_create(&z->thread, NULL, start_up, z) == 0;
  if (!z->threaded) {               /* no thread: open here, the lookups load the rest */
    atomic_store(&z->stop, 1);
    start_up(z);
  }
  return z;
}

void hka_sym_ready(hka_symbolizer *z, const hka_state *s) {
  if (!z) return;
  if (z->threaded) {                /* what is not warmed yet, the lookups load */
    atomic_store(&z->stop, 1);
    pthread_join(z->thread, NULL);
    z->threaded = 0;
  }
  free_early(z);
  z->s = s;
  if (z->dwfl && s->nmodules > z->nreported) {   /* loaded during the run */
    dwfl_report_begin_add(z->dwfl);
    report_modules(z->dwfl, s->modules, z->nreported, s->nmodules);
    dwfl_report_end(z->dwfl, NULL, NULL);
  }
  z->nreported = s->nmodules;
}

hka_symbolizer *hka_sym_open(const hka_state *s) {
  hka_symbolizer *z = sym_new(s);
  if (!z) return NULL;
  atomic_store(&z->stop, 1);        /* nothing to overlap with: load lazily */
  start_up(z);
  hka_sym_ready(z, s);
  return z;
}

/* The trace's module holding addr: the one whose range has it, else the
 * one with the highest base below it when sizes are unknown. */
static const hka_module *module_of(const hka_state *s, uint64_t addr) {
  const hka_module *best = NULL;
  for (uint32_t i = 0; i < s->nmodules; i++) {
    const hka_module *m = &s->modules[i];
    if (addr < m->base) continue;
    if (m->size && addr - m->base < m->size) return m;
    if (!m->size && (!best || m->base > best->base)) best = m;
  }
  return best;
}

static const char *base_name(const char *p) {
  const char *q = p ? strrchr(p, '/') : NULL;
  return q ? q + 1 : p;
}

void hka_sym_lookup(hka_symbolizer *z, uint64_t addr, hka_sym *out) {
  memset(out, 0, sizeof *out);
  if (!z || !addr) return;
  uint64_t *slot = hka_map_find(&z->cache, addr);
  if (slot) { *out = z->res[*slot - 1]; return; }

  hka_sym r = {0};
  const hka_module *m = module_of(z->s, addr);
  if (m) {
    r.module = strdup(base_name(m->path));
    r.offset = addr - m->base;
  }
  Dwarf_Addr pc = addr - 1;         /* inside the call, not after it */
  Dwfl_Module *dm = z->dwfl ? dwfl_addrmodule(z->dwfl, pc) : NULL;
  if (dm) {
    const char *fn = dwfl_module_addrname(dm, pc);
    if (fn) r.function = strdup(fn);
    Dwfl_Line *l = dwfl_module_getsrc(dm, pc);
    int line = 0;
    const char *file = l ? dwfl_lineinfo(l, NULL, &line, NULL, NULL, NULL) : NULL;
    if (file) { r.file = strdup(file); r.line = line; }
  }

  if (z->n == z->cap) {
    size_t ncap = z->cap ? z->cap * 2 : 64;
    hka_sym *n = realloc(z->res, ncap * sizeof *n);
    if (!n) { *out = r; return; }   /* uncached; strings leak to the caller's lifetime */
    z->res = n;
    z->cap = ncap;
  }
  z->res[z->n++] = r;
  slot = hka_map_slot(&z->cache, addr);
  if (slot) *slot = z->n;
  *out = r;
}

void hka_sym_close(hka_symbolizer *z) {
  if (!z) return;
  if (z->threaded) {                /* never made ready (the pass failed) */
    atomic_store(&z->stop, 1);
    pthread_join(z->thread, NULL);
  }
  free_early(z);
  for (size_t i = 0; i < z->n; i++) {
    free((char *)z->res[i].function);
    free((char *)z->res[i].file);
    free((char *)z->res[i].module);
  }
  free(z->res);
  hka_map_free(&z->cache);
  if (z->dwfl) dwfl_end(z->dwfl);
  free(z);
}

const char *hka_sym_format(const hka_sym *sym, uint64_t addr, char *buf, size_t n) {
  if (sym->function && sym->file)
    snprintf(buf, n, "%s (%s:%d)", sym->function, base_name(sym->file), sym->line);
  else if (sym->function && sym->module)
    snprintf(buf, n, "%s (%s+0x%" PRIx64 ")", sym->function, sym->module, sym->offset);
  else if (sym->module)
    snprintf(buf, n, "%s+0x%" PRIx64, sym->module, sym->offset);
  else if (addr)
    snprintf(buf, n, "0x%" PRIx64, addr);
  else
    snprintf(buf, n, "?");
  return buf;
}
