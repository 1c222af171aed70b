/* hakmem_tp.h — the `hakmem` LTTng-UST tracepoint provider.
 *
 * One event per hkt_kind (include/hakmem/trace.h), named by hkt_kind_name():
 * hakmem:malloc, hakmem:free, hakmem:ss_register, ... Every event carries
 * `seq` (the global order, stamped by the recorder) and `tid` (hakmem's
 * thread index), then every generic slot of an hkt_event, named for what it
 * holds in that kind (see HKL_EVENT below).
 * The caller of a malloc-family call is not a payload field: it is the
 * probe's ip (LTTNG_UST_TP_IP_PARAM), recorded by the `ip` context, which
 * is where LTTng viewers look for it. Two more events describe the process
 * once, before anything else: hakmem:header and one hakmem:header_module per
 * loaded module. tools/cmd_import.c maps the names back (keep both in sync).
 *
 * Every tracepoint takes the event itself, `const hkt_event *ev`. */
#undef LTTNG_UST_TRACEPOINT_PROVIDER
#define LTTNG_UST_TRACEPOINT_PROVIDER hakmem

#undef LTTNG_UST_TRACEPOINT_INCLUDE
#define LTTNG_UST_TRACEPOINT_INCLUDE "hakmem_tp.h"

#ifndef HAKMEM_TP_TYPES_H
#define HAKMEM_TP_TYPES_H
#include "hakmem/trace.h"
/* The process, once (pid, command line, arena, classes...). */
typedef struct hkl_header_args {
  const hkt_header *h;
  uint64_t first_seq;       /* the seq counter when the header was taken */
} hkl_header_args;

#endif

#if !defined(HAKMEM_TP_H) || defined(LTTNG_UST_TRACEPOINT_HEADER_MULTI_READ)
#define HAKMEM_TP_H

#include <lttng/tracepoint.h>


/* ev is a zeroed event (no caller) in the header events: the provider's
 * LTTNG_UST_TP_IP_PARAM is ev->caller in every probe. */
LTTNG_UST_TRACEPOINT_EVENT(hakmem, header,
  LTTNG_UST_TP_ARGS(const hkt_event *, ev, const hkl_header_args *, a),
  LTTNG_UST_TP_FIELDS(
    lttng_ust_field_integer(uint32_t, version, a->h->version)
    lttng_ust_field_integer(uint32_t, pid, a->h->pid)
    lttng_ust_field_integer(uint32_t, ppid, a->h->ppid)
    lttng_ust_field_integer(uint64_t, start_realtime_ns, a->h->start_realtime_ns)
    lttng_ust_field_integer_hex(uint64_t, arena_base, a->h->arena_base)
    lttng_ust_field_integer(uint64_t, first_seq, a->first_seq)
    lttng_ust_field_integer(uint32_t, num_modules, a->h->num_modules)
    lttng_ust_field_sequence(uint32_t, class_size, a->h->class_size,
                             uint32_t, a->h->num_classes)
    lttng_ust_field_string(cmdline, a->h->cmdline)
    lttng_ust_field_string(config, a->h->config)
  )
)

LTTNG_UST_TRACEPOINT_EVENT(hakmem, header_module,
  LTTNG_UST_TP_ARGS(const hkt_event *, ev, const hkt_module *, m, uint32_t, index),
  LTTNG_UST_TP_FIELDS(
    lttng_ust_field_integer(uint32_t, index, index)
    lttng_ust_field_integer_hex(uint64_t, base, m->base)
    lttng_ust_field_integer(uint64_t, size, m->size)
    lttng_ust_field_sequence_hex(uint8_t, build_id, m->build_id,
                                 uint32_t, m->build_id_len)
    lttng_ust_field_string(path, m->path)
  )
)

/* Every event carries all the generic slots of an hkt_event, so that the
 * import is lossless whatever the allocator puts in them; a slot with a
 * meaning for the kind (hakmem/trace.h) is named for it, the others keep
 * their generic name (fn, aux, aux2, aux3). Strings and build-ids only
 * where the kind has them. */
#define HKL_COMMON \
  lttng_ust_field_integer(uint64_t, seq, ev->seq) \
  lttng_ust_field_integer(uint32_t, tid, ev->tid) \
  lttng_ust_field_integer(uint32_t, cls, ev->cls) \
  lttng_ust_field_integer_hex(uint64_t, ptr, ev->ptr) \
  lttng_ust_field_integer(uint64_t, size, ev->size)
#define HKF(name)   lttng_ust_field_integer(uint16_t, name, ev->fn)
#define HKA1(name)   lttng_ust_field_integer(uint64_t, name, ev->aux)
#define HKA1X(name)  lttng_ust_field_integer_hex(uint64_t, name, ev->aux)
#define HKA2(name)   lttng_ust_field_integer(uint64_t, name, ev->aux2)
#define HKA3(name)   lttng_ust_field_integer(uint64_t, name, ev->aux3)
#define HKGEN    HKF(fn) HKA1(aux) HKA2(aux2) HKA3(aux3)

#define HKL_EVENT(name, ...) \
  LTTNG_UST_TRACEPOINT_EVENT(hakmem, name, \
    LTTNG_UST_TP_ARGS(const hkt_event *, ev), \
    LTTNG_UST_TP_FIELDS(HKL_COMMON __VA_ARGS__))

/* The hot kinds have a compact layout, used by hakmem_lttng.c when the
 * event fits it: the slots it leaves out are 0, tid < 255, cls < 255 or
 * none (stored as 255). seq is its low 32 bits (the importer extends it:
 * the trace is in seq order give or take the reorder window). lttng-ust
 * packs fields unaligned on x86, so every byte counts. An event that does
 * not fit goes out whole as hakmem:event. */
#define HKL_SMALL(name, ...) \
  LTTNG_UST_TRACEPOINT_EVENT(hakmem, name, \
    LTTNG_UST_TP_ARGS(const hkt_event *, ev), \
    LTTNG_UST_TP_FIELDS( \
      lttng_ust_field_integer(uint32_t, seq, (uint32_t)ev->seq) \
      __VA_ARGS__ \
      lttng_ust_field_integer(uint8_t, tid, (uint8_t)ev->tid) \
      lttng_ust_field_integer(uint8_t, cls, (uint8_t)ev->cls)))
#define HKL_U64(name, src) lttng_ust_field_integer(uint64_t, name, src)
#define HKL_X64(name, src) lttng_ust_field_integer_hex(uint64_t, name, src)
#define HKL_U32(name, src) lttng_ust_field_integer(uint32_t, name, (uint32_t)(src))

HKL_SMALL(malloc, HKL_X64(ptr, ev->ptr) HKL_U64(size, ev->size))
HKL_SMALL(calloc, HKL_X64(ptr, ev->ptr) HKL_U64(size, ev->size) HKL_U64(count, ev->aux))
HKL_SMALL(realloc, HKL_X64(ptr, ev->ptr) HKL_U64(size, ev->size) HKL_X64(old_ptr, ev->aux)
                   lttng_ust_field_integer(uint8_t, fn, (uint8_t)ev->fn))
HKL_SMALL(free, HKL_X64(ptr, ev->ptr))
HKL_SMALL(cache_refill, HKL_X64(ss_base, ev->aux) HKL_U32(size, ev->size) HKL_U32(drained, ev->aux2))
HKL_SMALL(cache_flush, HKL_U32(size, ev->size))
HKL_SMALL(remote_push, HKL_X64(ptr, ev->ptr) HKL_X64(ss_base, ev->aux) HKL_U32(owner, ev->aux2))
HKL_SMALL(remote_drain, HKL_X64(ss_base, ev->aux) HKL_U32(size, ev->size))

/* Every other kind carries all the slots. aux2 of a call is errno. */
HKL_EVENT(aligned, HKF(fn) HKA1(align) HKA2(err) HKA3(aux3))
/* Threads. */
HKL_EVENT(thread_start, HKF(fn) HKA1(os_tid) HKA2(aux2) HKA3(aux3))
HKL_EVENT(thread_exit,  HKF(fn) HKA1(os_tid) HKA2(aux2) HKA3(aux3))
/* SuperSlabs and caches. */
HKL_EVENT(ss_register,   HKF(fn) HKA1(owner) HKA2(ss_id) HKA3(live_blocks))
HKL_EVENT(ss_unregister, HKF(fn) HKA1(owner) HKA2(ss_id) HKA3(live_blocks))
HKL_EVENT(ss_empty,      HKF(fn) HKA1(aux) HKA2(ss_id) HKA3(aux3))
HKL_EVENT(ss_adopt,      HKF(from_cache) HKA1(owner) HKA2(ss_id) HKA3(aux3))
HKL_EVENT(ss_abandon,    HKF(fn) HKA1(live_blocks) HKA2(ss_id) HKA3(aux3))
/* Large blocks. */
HKL_EVENT(large_map,   HKGEN)
HKL_EVENT(large_unmap, HKGEN)
/* Modules loaded after start, markers, detections, the end. */
HKL_EVENT(module_load, HKGEN
  lttng_ust_field_sequence_hex(uint8_t, build_id, ev->bid, uint32_t, ev->bid_len)
  lttng_ust_field_string(path, ev->str ? ev->str : ""))
HKL_EVENT(mark, HKGEN lttng_ust_field_string(label, ev->str ? ev->str : ""))
HKL_EVENT(detection, HKF(detect) HKA1X(ss_base) HKA2(extra) HKA3(aux3))
HKL_EVENT(end, HKF(how) HKA1(status) HKA2(aux2) HKA3(aux3))
/* Any event whole, its kind a number: a hot kind that does not fit its
 * compact layout, or a kind newer than this provider. */
HKL_EVENT(event, lttng_ust_field_integer(uint16_t, kind, ev->kind) HKGEN)

#undef HKF
#undef HKA1
#undef HKA1X
#undef HKA2
#undef HKA3
#undef HKGEN
#undef HKL_U64
#undef HKL_X64
#undef HKL_U32

#endif /* HAKMEM_TP_H */

#include <lttng/tracepoint-event.h>
