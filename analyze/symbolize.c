/* symbolize.c — caller addresses to function, file and line with elfutils'
 * libdwfl, offline: the modules are the ones the trace's header and
 * MODULE_LOAD events list (path, load base, build-id), opened from disk only
 * when their build-id still matches, so a rebuilt binary gives module+offset
 * instead of wrong lines. Results are cached per address. */
#include <elfutils/libdwelf.h>
#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
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

hka_symbolizer *hka_sym_open(const hka_state *s) {
  hka_symbolizer *z = calloc(1, sizeof *z);
  if (!z) return NULL;
  z->s = s;
  elf_version(EV_CURRENT);
  z->dwfl = dwfl_begin(&callbacks);
  if (!z->dwfl) return z;           /* module+offset only */
  dwfl_report_begin(z->dwfl);
  for (uint32_t i = 0; i < s->nmodules; i++) {
    const hka_module *m = &s->modules[i];
    int is_exec = 0;
    if (!m->path || !*m->path || !file_matches(m, &is_exec)) continue;
    dwfl_report_elf(z->dwfl, m->path, m->path, -1, is_exec ? 0 : m->base, false);
  }
  dwfl_report_end(z->dwfl, NULL, NULL);
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
