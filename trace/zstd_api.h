/* zstd_api.h — libzstd through a table filled on first use.
 *
 * libhakmem.so is preloaded into every process it runs, and most of them
 * never record: libzstd is not one of its NEEDED libraries (mapped, it is
 * ~80 KiB of every process's RSS). The first zstd call of a process (the
 * recorder's constructor, recover, a tool's reader) dlopens it. Every
 * ZSTD_ function trace/ calls is named here; a file that calls zstd
 * includes this header instead of <zstd.h>, and a call not in the table
 * fails to link in libhakmem.so (it has no -lzstd). */
#ifndef HKT_ZSTD_API_H
#define HKT_ZSTD_API_H

#ifndef ZSTD_STATIC_LINKING_ONLY
#define ZSTD_STATIC_LINKING_ONLY   /* the _advanced constructors, ZSTD_d_stableOutBuffer */
#endif
#include <zstd.h>
#include <zstd_errors.h>
#include "hkt_internal.h"

#define HKT_ZSTD_FUNCS(X)                                                                          \
  X(isError) X(getErrorName) X(getErrorCode) X(minCLevel) X(maxCLevel) X(compressBound)            \
  X(getFrameContentSize) X(createCCtx_advanced) X(freeCCtx) X(CCtx_reset) X(CCtx_setParameter)     \
  X(CCtx_setPledgedSrcSize) X(compressStream2) X(createDCtx_advanced) X(freeDCtx) X(DCtx_reset)    \
  X(DCtx_setParameter) X(decompressStream)

typedef struct hkt_zstd_api {
#define HKT_ZSTD_FIELD(f) __typeof__(&ZSTD_##f) f;
  HKT_ZSTD_FUNCS(HKT_ZSTD_FIELD)
#undef HKT_ZSTD_FIELD
} hkt_zstd_api;

/* The table: libzstd's functions, or (when it cannot be loaded, said once
 * on stderr) stand-ins whose contexts are NULL and whose results are
 * errors, so every caller takes its out-of-memory or error path. */
HKT_INTERNAL const hkt_zstd_api *hkt_zstd(void);

#define ZSTD_isError(...) (hkt_zstd()->isError(__VA_ARGS__))
#define ZSTD_getErrorName(...) (hkt_zstd()->getErrorName(__VA_ARGS__))
#define ZSTD_getErrorCode(...) (hkt_zstd()->getErrorCode(__VA_ARGS__))
#define ZSTD_minCLevel(...) (hkt_zstd()->minCLevel(__VA_ARGS__))
#define ZSTD_maxCLevel(...) (hkt_zstd()->maxCLevel(__VA_ARGS__))
#define ZSTD_compressBound(...) (hkt_zstd()->compressBound(__VA_ARGS__))
#define ZSTD_getFrameContentSize(...) (hkt_zstd()->getFrameContentSize(__VA_ARGS__))
#define ZSTD_createCCtx_advanced(...) (hkt_zstd()->createCCtx_advanced(__VA_ARGS__))
#define ZSTD_freeCCtx(...) (hkt_zstd()->freeCCtx(__VA_ARGS__))
#define ZSTD_CCtx_reset(...) (hkt_zstd()->CCtx_reset(__VA_ARGS__))
#define ZSTD_CCtx_setParameter(...) (hkt_zstd()->CCtx_setParameter(__VA_ARGS__))
#define ZSTD_CCtx_setPledgedSrcSize(...) (hkt_zstd()->CCtx_setPledgedSrcSize(__VA_ARGS__))
#define ZSTD_compressStream2(...) (hkt_zstd()->compressStream2(__VA_ARGS__))
#define ZSTD_createDCtx_advanced(...) (hkt_zstd()->createDCtx_advanced(__VA_ARGS__))
#define ZSTD_freeDCtx(...) (hkt_zstd()->freeDCtx(__VA_ARGS__))
#define ZSTD_DCtx_reset(...) (hkt_zstd()->DCtx_reset(__VA_ARGS__))
#define ZSTD_DCtx_setParameter(...) (hkt_zstd()->DCtx_setParameter(__VA_ARGS__))
#define ZSTD_decompressStream(...) (hkt_zstd()->decompressStream(__VA_ARGS__))

#endif /* HKT_ZSTD_API_H */
