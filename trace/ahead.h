/* ahead.h — decode ahead: a reader on its own thread.
 *
 * A tool that reads a trace once, start to end, and does work per event
 * (analyze, stats, verify) spends about half its time decoding. With
 * hkt_ahead the decoding runs on a second thread, a few batches in front:
 * on two cores the tool then runs at the speed of the slower half instead
 * of the sum. Batches are decoded into slots of their own (events of
 * HKT_BATCH, and a copy of the one string a batch may end with), so the
 * reader's own array is never shared. The caller, when it would wait for
 * the producer, decompresses the reader's next zstd frame.
 *
 * hkt_ahead_batch has hkt_reader_batch's contract: a count of events valid
 * until the next call, 0 at the end, or the reader's error. While an
 * hkt_ahead is open the reader belongs to its thread; after
 * hkt_ahead_close the caller may use it again (errmsg, complete, stacks). */
#ifndef HKT_AHEAD_H
#define HKT_AHEAD_H

#include "hakmem/trace.h"

typedef struct hkt_ahead hkt_ahead;

/* HKT_ERR_NOMEM, or 0 and *out. Without a thread (none could be made)
 * the batches come from the calling thread, as from the reader itself. */
int hkt_ahead_open(hkt_ahead **out, hkt_reader *r);
int hkt_ahead_batch(hkt_ahead *a, const hkt_event **evs);
/* hkt_reader_offset as of the batch returned last. */
uint64_t hkt_ahead_offset(const hkt_ahead *a);
/* Stops the thread (wherever it is) and frees everything. */
void hkt_ahead_close(hkt_ahead *a);

#endif /* HKT_AHEAD_H */
