/* zstd_api.c — the libzstd table (zstd_api.h), filled by dlopen on the
 * first call. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "zstd_api.h"

#define HKT_ZSTD_SONAME "libzstd.so.1"

/* Stand-ins for a process without libzstd: no context, every result an
 * error (ZSTD_isError is the real test, so (size_t)-1 is one). */
static unsigned none_isError(size_t code) { return code > (size_t)-ZSTD_error_maxCode; }
static const char *none_getErrorName(size_t code) { (void)code; return HKT_ZSTD_SONAME " cannot be loaded"; }
static ZSTD_ErrorCode none_getErrorCode(size_t code) { (void)code; return ZSTD_error_GENERIC; }
static int none_minCLevel(void) { return 1; }
static int none_maxCLevel(void) { return 1; }
static size_t none_compressBound(size_t n) { return ZSTD_COMPRESSBOUND(n); }
static unsigned long long none_getFrameContentSize(const void *src, size_t n) {
  (void)src, (void)n;
  return ZSTD_CONTENTSIZE_ERROR;
}
static ZSTD_CCtx *none_createCCtx_advanced(ZSTD_customMem m) { (void)m; return NULL; }
static size_t none_freeCCtx(ZSTD_CCtx *c) { (void)c; return 0; }
static size_t none_CCtx_reset(ZSTD_CCtx *c, ZSTD_ResetDirective r) { (void)c, (void)r; return (size_t)-1; }
static size_t none_CCtx_setParameter(ZSTD_CCtx *c, ZSTD_cParameter p, int v) { (void)c, (void)p, (void)v; return (size_t)-1; }
static size_t none_CCtx_setPledgedSrcSize(ZSTD_CCtx *c, unsigned long long n) { (void)c, (void)n; return (size_t)-1; }
static size_t none_compressStream2(ZSTD_CCtx *c, ZSTD_outBuffer *o, ZSTD_inBuffer *i, ZSTD_EndDirective e) {
  (void)c, (void)o, (void)i, (void)e;
  return (size_t)-1;
}
static ZSTD_DCtx *none_createDCtx_advanced(ZSTD_customMem m) { (void)m; return NULL; }
static size_t none_freeDCtx(ZSTD_DCtx *d) { (void)d; return 0; }
static size_t none_DCtx_reset(ZSTD_DCtx *d, ZSTD_ResetDirective r) { (void)d, (void)r; return (size_t)-1; }
static size_t none_DCtx_setParameter(ZSTD_DCtx *d, ZSTD_dParameter p, int v) { (void)d, (void)p, (void)v; return (size_t)-1; }
static size_t none_decompressStream(ZSTD_DCtx *d, ZSTD_outBuffer *o, ZSTD_inBuffer *i) {
  (void)d, (void)o, (void)i;
  return (size_t)-1;
}

static const hkt_zstd_api none = {
#define HKT_ZSTD_NONE(f) .f = none_##f,
  HKT_ZSTD_FUNCS(HKT_ZSTD_NONE)
#undef HKT_ZSTD_NONE
};

static hkt_zstd_api loaded;
static _Atomic(const hkt_zstd_api *) api;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* alloc/bypass.c keeps the loader's allocations out of the heap and the
 * trace; weak, for the fuzzer, which builds the reader without alloc/. */
extern void _hak_bypass_begin(void) __attribute__((weak));
extern void _hak_bypass_end(void) __attribute__((weak));

static void load(void) {
  if (_hak_bypass_begin) _hak_bypass_begin();
  void *h = dlopen(HKT_ZSTD_SONAME, RTLD_NOW | RTLD_LOCAL);
  hkt_zstd_api t;
  int ok = h != NULL;
#define HKT_ZSTD_SYM(f) if (ok && !(*(void **)&t.f = dlsym(h, "ZSTD_" #f))) ok = 0;
  HKT_ZSTD_FUNCS(HKT_ZSTD_SYM)
#undef HKT_ZSTD_SYM
  const char *why = ok ? NULL : dlerror();
  if (_hak_bypass_end) _hak_bypass_end();
  if (!ok) {
    char msg[512];
    int n = snprintf(msg, sizeof msg, "hakmem: cannot load %s (%s): traces cannot be written or read\n",
                     HKT_ZSTD_SONAME, why ? why : "missing symbol");
    if (n > 0 && write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1) < 0) { /* nothing to do */ }
    atomic_store_explicit(&api, &none, memory_order_release);
    return;
  }
  loaded = t;
  atomic_store_explicit(&api, &loaded, memory_order_release);
}

const hkt_zstd_api *hkt_zstd(void) {
  const hkt_zstd_api *a = atomic_load_explicit(&api, memory_order_acquire);
  if (hkt_likely(a != NULL)) return a;
  pthread_once(&once, load);
  return atomic_load_explicit(&api, memory_order_acquire);
}
