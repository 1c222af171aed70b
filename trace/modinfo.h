/* modinfo.h — one loaded module (base, size, path, GNU build-id) from its
 * dl_iterate_phdr entry, read from the program headers and PT_NOTE segments
 * in memory: no file is opened and nothing is allocated. Header-only, so
 * the recorder (modules.c) and the LTTng companion library
 * (trace/lttng/hakmem_lttng.c, a separate .so) share one copy of the logic. */
#ifndef HKT_MODINFO_H
#define HKT_MODINFO_H

#include <elf.h>
#include <link.h>
#include <string.h>
#include <unistd.h>
#include "hakmem/trace.h"

static inline void hkt_modinfo_build_id(const struct dl_phdr_info *info, hkt_module *m) {
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE) continue;
    const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr);
    const uint8_t *end = p + ph->p_memsz;
    while (p + sizeof(ElfW(Nhdr)) <= end) {
      const ElfW(Nhdr) *n = (const ElfW(Nhdr) *)p;
      const uint8_t *name = p + sizeof *n;
      const uint8_t *desc = name + ((n->n_namesz + 3) & ~3u);
      const uint8_t *next = desc + ((n->n_descsz + 3) & ~3u);
      if (next > end || next <= p) break;
      if (n->n_type == NT_GNU_BUILD_ID && n->n_namesz == 4 && !memcmp(name, "GNU", 4)) {
        uint32_t len = n->n_descsz < sizeof m->build_id ? n->n_descsz : sizeof m->build_id;
        memcpy(m->build_id, desc, len);
        m->build_id_len = len;
        return;
      }
      p = next;
    }
  }
}

/* Fills *m (path into path[cap]); 0 if the entry has no PT_LOAD segment. The
 * main program has no name in its entry: its path is /proc/self/exe. */
static inline int hkt_modinfo(const struct dl_phdr_info *info, hkt_module *m, char *path, size_t cap) {
  uint64_t lo = UINT64_MAX, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    if (ph->p_vaddr < lo) lo = ph->p_vaddr;
    if (ph->p_vaddr + ph->p_memsz > hi) hi = ph->p_vaddr + ph->p_memsz;
  }
  if (lo == UINT64_MAX || !cap) return 0;
  memset(m, 0, sizeof *m);
  const char *name = info->dlpi_name;
  if (!name || !*name) {
    ssize_t k = readlink("/proc/self/exe", path, cap - 1);
    path[k > 0 ? k : 0] = 0;
  } else {
    size_t k = strnlen(name, cap - 1);
    memcpy(path, name, k);
    path[k] = 0;
  }
  m->path = path;
  m->base = info->dlpi_addr + lo;
  m->size = hi - lo;
  hkt_modinfo_build_id(info, m);
  return 1;
}

#endif /* HKT_MODINFO_H */
