/* modules.c — the loaded modules (path, base, size, GNU build-id), from
 * dl_iterate_phdr (modinfo.h): no file is opened and nothing is allocated
 * but through hkt_mem, so it can run in the recorder's writer thread. */
#include "modinfo.h"
#include "recorder.h"

typedef struct scan_ctx {
  hkt_modlist *list;
  const hkt_modlist *known;   /* report only modules not in here (NULL: all) */
  int err;
} scan_ctx;

static int known(const hkt_modlist *k, uint64_t base) {
  for (uint32_t i = 0; k && i < k->n; i++)
    if (k->mods[i].base == base) return 1;
  return 0;
}

static int on_module(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  scan_ctx *c = arg;
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
  /* filled in the next free slot; kept only if new */
  hkt_module *m = &l->mods[l->n];
  if (hkt_modinfo(info, m, l->paths[l->n], HKT_MOD_PATH) && !known(c->known, m->base)) l->n++;
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
