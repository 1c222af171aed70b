/* mem.c — memory for the trace code without malloc.
 *
 * The writer and the spool drain run inside recorded processes, where malloc
 * is the allocator being recorded; they take pages straight from the kernel.
 * Allocations here are few and large (frame buffers, zstd workspaces), so one
 * mapping per allocation is fine. Sanitizer and fuzz builds use libc instead,
 * so that ASan sees every overflow. */
#include <stdlib.h>
#include <sys/mman.h>
#define ZSTD_STATIC_LINKING_ONLY
#include "zstd_api.h"
#include "hkt_internal.h"

#if defined(HAK_SANITIZER) || defined(HKT_FUZZ)
#define HKT_MEM_LIBC 1
#endif

#define HKT_MEM_HDR 16u   /* mapping length, kept in front of the block */

void *hkt_mem_alloc(size_t n) {
#ifdef HKT_MEM_LIBC
  if (n > ((size_t)1 << 40)) return NULL;
  size_t *h = calloc(1, n + HKT_MEM_HDR);
  if (!h) return NULL;
  h[0] = n;
  return (char *)h + HKT_MEM_HDR;
#else
  if (n > ((size_t)1 << 40)) return NULL;
  size_t len = (n + HKT_MEM_HDR + 4095) & ~(size_t)4095;
  void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) return NULL;
  ((size_t *)m)[0] = n;
  return (char *)m + HKT_MEM_HDR;
#endif
}

static size_t mem_size(void *p) { return ((size_t *)((char *)p - HKT_MEM_HDR))[0]; }

void hkt_mem_free(void *p) {
  if (!p) return;
#ifdef HKT_MEM_LIBC
  free((char *)p - HKT_MEM_HDR);
#else
  size_t len = (mem_size(p) + HKT_MEM_HDR + 4095) & ~(size_t)4095;
  munmap((char *)p - HKT_MEM_HDR, len);
#endif
}

void *hkt_mem_realloc(void *p, size_t n) {
  void *q = hkt_mem_alloc(n);
  if (!q) return NULL;
  if (p) {
    size_t old = mem_size(p);
    memcpy(q, p, old < n ? old : n);
    hkt_mem_free(p);
  }
  return q;
}

int hkt_buf_reserve(hkt_buf *b, size_t extra) {
  if (b->failed) return -1;
  if (b->cap - b->len >= extra) return 0;
  size_t want = b->cap ? b->cap : 4096;
  while (want - b->len < extra) want *= 2;
  uint8_t *p = hkt_mem_realloc(b->p, want);
  if (!p) { b->failed = 1; return -1; }
  b->p = p;
  b->cap = want;
  return 0;
}

void hkt_buf_release(hkt_buf *b) {
  hkt_mem_free(b->p);
  memset(b, 0, sizeof *b);
}

/* zstd's workspaces come from hkt_mem too. */
static void *zalloc(void *opaque, size_t n) { (void)opaque; return hkt_mem_alloc(n); }
static void zfree(void *opaque, void *p) { (void)opaque; hkt_mem_free(p); }
static const ZSTD_customMem hkt_zmem = { zalloc, zfree, NULL };

ZSTD_CCtx *hkt_zstd_cctx(void) { return ZSTD_createCCtx_advanced(hkt_zmem); }
ZSTD_DCtx *hkt_zstd_dctx(void) { return ZSTD_createDCtx_advanced(hkt_zmem); }
