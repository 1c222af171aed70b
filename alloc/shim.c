/* shim.c — the malloc family under its standard names, for LD_PRELOAD and
 * -lhakmem. Only libhakmem.so/.a contain this file; libhakmem_core.a (tools,
 * tests) keeps the process's own malloc and offers the hak_* names.
 *
 * No dlsym, no fallback allocator: hakmem serves every call itself from the
 * first one on, so start-up order (calls during the loader's or libc's own
 * set-up) needs nothing special. */
#include <sys/syscall.h>
#include <unistd.h>
#include "entry.h"

#define RA __builtin_return_address(0)
HAK_API void *malloc(size_t n) {
  void *p;
  if (likely(_hak_fast_malloc(n, &p))) return p;
  return _hak_malloc_miss(n, RA);
}
HAK_API void free(void *p) {
  if (likely(_hak_fast_free(p))) return;
  _hak_free_miss(p, RA);
}
HAK_API void  *calloc(size_t n, size_t s) { return _hak_e_calloc(n, s, RA); }
HAK_API void  *realloc(void *p, size_t n) { return _hak_realloc_impl(p, n, 0, HKT_FN_REALLOC, RA); }
HAK_API void  *reallocarray(void *p, size_t n, size_t s) { return _hak_realloc_impl(p, s, n, HKT_FN_REALLOCARRAY, RA); }
HAK_API int    posix_memalign(void **o, size_t a, size_t n) { return _hak_posix_memalign_impl(o, a, n, RA); }
HAK_API void  *aligned_alloc(size_t a, size_t n) { return _hak_aligned_impl(a, n, HKT_FN_ALIGNED_ALLOC, RA); }
HAK_API void  *memalign(size_t a, size_t n) { return _hak_aligned_impl(a, n, HKT_FN_MEMALIGN, RA); }
HAK_API void  *valloc(size_t n) { return _hak_aligned_impl(HAK_PAGE, n, HKT_FN_VALLOC, RA); }
HAK_API void  *pvalloc(size_t n) { return _hak_aligned_impl(HAK_PAGE, n, HKT_FN_PVALLOC, RA); }
HAK_API size_t malloc_usable_size(void *p) { _hak_init(); return _hak_usable_size(p); }
/* glibc's internal aliases that some programs and libc itself call. */
HAK_API void   cfree(void *p) { _hak_e_free(p, RA); }
HAK_API void  *__libc_malloc(size_t n) { return _hak_e_malloc(n, RA); }
HAK_API void   __libc_free(void *p) { _hak_e_free(p, RA); }
HAK_API void  *__libc_calloc(size_t n, size_t s) { return _hak_e_calloc(n, s, RA); }
HAK_API void  *__libc_realloc(void *p, size_t n) { return _hak_realloc_impl(p, n, 0, HKT_FN_REALLOC, RA); }
HAK_API void  *__libc_memalign(size_t a, size_t n) { return _hak_aligned_impl(a, n, HKT_FN_MEMALIGN, RA); }

/* _exit and _Exit skip exit's handlers, where a recorder writes how the
 * run ended: a forked child's usual way out, and a signal handler's. The
 * recorder (if any) is told first, then the process goes, as glibc's do. */
static __attribute__((noreturn)) void exit_now(int status) {
  if (_hak_recorder_exit) _hak_recorder_exit(status);
  for (;;) syscall(SYS_exit_group, status);
}
HAK_API void _exit(int status) { exit_now(status); }
HAK_API void _Exit(int status) { exit_now(status); }
