/* solo_seq.c — the hand-over from one solo thread to shared seqs
 * (solo_seq.h says why and how). */
#include <linux/membarrier.h>
#include <sched.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "solo_seq.h"

void hkt_solo_init(hkt_solo *q, int want) {
  memset(q, 0, sizeof *q);
  q->ok = want && syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* Every thread to the locked xadd, for good: on return the solo thread (if
 * any) is out of its plain xadd and takes no other. Every joiner that finds
 * the hand-over not done does it itself (it is idempotent), so no lock. */
static void go_shared(hkt_solo *q) {
  if (atomic_load_explicit(&q->shared, memory_order_acquire)) return;
  atomic_store(&q->shared_req, 1);
  if (atomic_load(&q->taken)) {
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);   /* registered: cannot fail */
    while (atomic_load_explicit(&q->busy, memory_order_relaxed)) sched_yield();
  }
  atomic_store_explicit(&q->shared, 1, memory_order_release);
}

void hkt_solo_join(hkt_solo *q, uint8_t *mode) {
  uint8_t no = 0;
  if (q->ok && !atomic_load(&q->shared_req) && atomic_compare_exchange_strong(&q->taken, &no, 1)) {
    *mode = HKT_SEQ_SOLO;   /* this first seq still through the lock: equally right */
    return;
  }
  go_shared(q);
  *mode = HKT_SEQ_SHARED;
}
