/* hkt_batch.h — the reader's batch interface: events handed out by
 * pointer, a run at a time, with no per-event call or copy.
 *
 * The reader decodes an event frame in chunks of up to HKT_BATCH events
 * into an array it owns; hkt_reader_batch gives the caller that array.
 * It mixes freely with hkt_reader_next (both take from the same chunk).
 * A chunk ends after an event that has a string (MODULE_LOAD, MARK), so
 * such an event's str and bid stay valid until the next call, as with
 * hkt_reader_next. Errors as hkt_reader_next: the events before a bad one
 * come first, then the error (sticky). */
#ifndef HKT_BATCH_H
#define HKT_BATCH_H

#include "hakmem/trace.h"

#define HKT_BATCH 256u

/* n > 0: evs[0..n) are the next events (valid until the next call on r);
 * 0: end of trace; < 0: an hkt_err. */
HAK_API int hkt_reader_batch(hkt_reader *r, const hkt_event **evs);

#endif /* HKT_BATCH_H */
