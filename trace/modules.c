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

/* ---- the spool's module table: a u32 count, then per module its path
 * (varint length, bytes), base, size, build-id length (varints) and
 * build-id bytes, as in the header frame (docs/trace-format.md) ---- */

void hkt_modules_to_spool(hkt_spool *s, const hkt_modlist *l) {
  hkt_buf b = {0};
  uint32_t n = 0;
  for (; n < l->n; n++) {
    size_t before = b.len;
    hkt_module_encode(&b, &l->mods[n]);
    if (b.failed || 4 + b.len > HKT_SPOOL_MODS_MAX) { b.len = before; break; }   /* full: the modules so far */
  }
  uint8_t *area = s->base + s->h->mods_off;
  memcpy(area, &n, 4);
  if (b.len) memcpy(area + 4, b.p, b.len);
  atomic_store_explicit(&s->h->mods_len, (uint32_t)(4 + b.len), memory_order_release);
  hkt_buf_release(&b);
}

int hkt_modules_from_spool(const hkt_spool *s, hkt_modlist *out) {
  memset(out, 0, sizeof *out);
  uint32_t len = atomic_load_explicit(&s->h->mods_len, memory_order_acquire), n;
  if (len < 4 || len > HKT_SPOOL_MODS_MAX) return 0;
  const uint8_t *area = s->base + s->h->mods_off;
  memcpy(&n, area, 4);
  if (n > HKT_MAX_MODULES) return HKT_ERR_CORRUPT;
  out->mods = hkt_mem_alloc((n + 1) * sizeof *out->mods);
  out->paths = hkt_mem_alloc((n + 1) * sizeof *out->paths);
  if (!out->mods || !out->paths) { hkt_modlist_free(out); return HKT_ERR_NOMEM; }
  out->cap = n + 1;
  hkt_cur c = { area + 4, area + len, 0 };
  for (uint32_t i = 0; i < n; i++) {
    hkt_module *m = &out->mods[i];
    uint64_t pl = hkt_get_varint(&c);
    const uint8_t *p = c.bad ? NULL : hkt_get_bytes(&c, pl);
    m->base = hkt_get_varint(&c);
    m->size = hkt_get_varint(&c);
    uint64_t bl = hkt_get_varint(&c);
    const uint8_t *b = !c.bad && bl <= sizeof m->build_id ? hkt_get_bytes(&c, bl) : NULL;
    if (!p || !b) return HKT_ERR_CORRUPT;   /* the modules before it are kept */
    size_t keep = pl < HKT_MOD_PATH - 1 ? (size_t)pl : HKT_MOD_PATH - 1;
    memcpy(out->paths[i], p, keep);
    out->paths[i][keep] = 0;
    m->path = out->paths[i];
    memcpy(m->build_id, b, bl);
    m->build_id_len = (uint32_t)bl;
    out->n = i + 1;
  }
  return 0;
}
