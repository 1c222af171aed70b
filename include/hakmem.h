/* hakmem.h — public API of the hakmem allocator.
 *
 * Linked or preloaded, libhakmem.so provides the whole malloc family
 * (malloc, free, calloc, realloc, ...). The hak_* names below reach the same
 * heap explicitly; libhakmem_core.a offers only these, so a program (the
 * replayer, a test under ASan) can keep its own malloc and still drive a
 * hakmem heap. */
#ifndef HAKMEM_H
#define HAKMEM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HAK_API __attribute__((visibility("default")))

HAK_API void  *hak_malloc(size_t size);
HAK_API void   hak_free(void *p);
HAK_API void  *hak_calloc(size_t n, size_t size);
HAK_API void  *hak_realloc(void *p, size_t size);
HAK_API void  *hak_reallocarray(void *p, size_t n, size_t size);
HAK_API int    hak_posix_memalign(void **out, size_t align, size_t size);
HAK_API void  *hak_aligned_alloc(size_t align, size_t size);
HAK_API void  *hak_memalign(size_t align, size_t size);
HAK_API void  *hak_valloc(size_t size);
HAK_API void  *hak_pvalloc(size_t size);
HAK_API size_t hak_malloc_usable_size(const void *p);

/* Give back this thread's caches now (what thread exit does). */
HAK_API void   hak_thread_flush(void);

/* Counters since start. Exact when the process is quiescent. */
#define HAK_NUM_CLASSES 32          /* tiny C0..C7, then mid classes */
typedef struct hak_class_stats {
  uint32_t block_size;
  uint64_t allocs, frees;           /* malloc-family calls served / freed */
  uint64_t refills, flushes;        /* per-thread cache batches */
  uint64_t remote_frees, remote_drains;
  uint64_t ss_registered, ss_unregistered;
  uint64_t live_blocks, peak_live_blocks;
} hak_class_stats;

typedef struct hak_stats {
  uint32_t num_classes;             /* tiny + mid classes in use */
  hak_class_stats cls[HAK_NUM_CLASSES];
  uint64_t large_allocs, large_frees, large_live_bytes, large_peak_bytes;
  uint64_t ss_live, ss_peak, ss_cached;      /* SuperSlabs now, at peak, in the empty cache */
  uint64_t os_reserved_bytes;       /* address space reserved (arena) */
  uint64_t os_committed_bytes;      /* handed out of the arena and not decommitted */
  uint64_t os_commits, os_decommits;
  uint64_t arena_base;
  uint64_t invalid_frees;
  uint64_t threads_started, threads_exited, ss_adopted;
} hak_stats;

HAK_API void hak_stats_get(hak_stats *out);
HAK_API void hak_stats_print(int fd);

/* Recording control (effective when recording, no-op otherwise). A marker
 * is an event with a label of up to 64 bytes. */
HAK_API void hak_trace_mark(const char *label);
HAK_API int  hak_trace_active(void);

#ifdef __cplusplus
}
#endif
#endif /* HAKMEM_H */
