/* modules.c — the loaded modules (path, base, size, GNU build-id), from
 * dl_iterate_phdr and the PT_NOTE segments in memory: no file is opened and
 * nothing is allocated but through hkt_mem, so it can run in the recorder's
 * writer thread. */
#include <elf.h>
#include <link.h>
#include <unistd.h>
#include "recorder.h"

typedef struct scan_ctx {
  hkt_modlist *list;
  const hkt_modlist *known;   /* report only modules not in here (NULL: all) */
  int err;
} scan_ctx;

static void build_id(const struct dl_phdr_info *info, hkt_module *m) {
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
        uint32_t len = n->n_descsz > 40 ? 40 : n->n_descsz;
        memcpy(m->build_id, desc, len);
        m->build_id_len = len;
        return;
      }
      p = next;
    }
  }
}

static int known(const hkt_modlist *k, uint64_t base) {
  for (uint32_t i = 0; k && i < k->n; i++)
    if (k->mods[i].base == base) return 1;
  return 0;
}

static int on_module(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  scan_ctx *c = arg;
  uint64_t lo = UINT64_MAX, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    if (ph->p_vaddr < lo) lo = ph->p_vaddr;
    if (ph->p_vaddr + ph->p_memsz > hi) hi = ph->p_vaddr + ph->p_memsz;
  }
  if (lo == UINT64_MAX) return 0;
  uint64_t base = info->dlpi_addr + lo;
  if (known(c->known, base)) return 0;
  hkt_modlist *l = c->list;
  if (l->n == l->cap) {
    uint32_t cap = l->cap ? l->cap * 2 : 64;
    if (cap > HKT_MAX_MODULES) return 1;
    hkt_module *m = hkt_mem_realloc(l->mods, cap * sizeof *m);
    char (*p)[HKT_MOD_PATH] = hkt_mem_realloc(l->paths, cap * sizeof *p);
    if (!m || !p) { c->err = 1; return 1; }
    l->mods = m;
    l->paths = p;
    l->cap = cap;
    for (uint32_t i = 0; i < l->n; i++) l->mods[i].path = l->paths[i];
  }
  hkt_module *m = &l->mods[l->n];
  memset(m, 0, sizeof *m);
  char *path = l->paths[l->n];
  const char *name = info->dlpi_name;
  if (!name || !*name) {
    ssize_t k = readlink("/proc/self/exe", path, HKT_MOD_PATH - 1);
    path[k > 0 ? k : 0] = 0;
  } else {
    size_t k = strnlen(name, HKT_MOD_PATH - 1);
    memcpy(path, name, k);
    path[k] = 0;
  }
  m->path = path;
  m->base = base;
  m->size = hi - lo;
  build_id(info, m);
  l->n++;
  return 0;
}

int hkt_modules_scan(hkt_modlist *out, const hkt_modlist *known_mods) {
  scan_ctx c = { out, known_mods, 0 };
  dl_iterate_phdr(on_module, &c);
  return c.err ? HKT_ERR_NOMEM : 0;
}

static int count_cb(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  *(uint64_t *)arg = info->dlpi_adds;
  return 1;
}

uint64_t hkt_modules_adds(void) {
  uint64_t adds = 0;
  dl_iterate_phdr(count_cb, &adds);
  return adds;
}

void hkt_modlist_free(hkt_modlist *l) {
  hkt_mem_free(l->mods);
  hkt_mem_free(l->paths);
  memset(l, 0, sizeof *l);
}
