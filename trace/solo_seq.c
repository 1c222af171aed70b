/* solo_seq.c — handing the counter over from a solo thread (solo_seq.h
 * says why and how). */
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

/* Set `bit` in req; on return the solo thread (if any) is out of its
 * plain xadd and takes no other while the bit is set. */
static void request(hkt_solo *q, uint8_t bit) {
  atomic_fetch_or(&q->req, bit);
  if (atomic_load(&q->taken)) {
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);   /* registered: cannot fail */
    while (atomic_load_explicit(&q->busy, memory_order_relaxed)) sched_yield();
  }
}

/* Every thread to the locked xadd, for good. Every joiner that finds it not
 * done does it itself (it is idempotent), so no lock. */
static void go_shared(hkt_solo *q) {
  if (atomic_load_explicit(&q->shared, memory_order_acquire)) return;
  request(q, HKT_SOLO_FOR_GOOD);
  atomic_store_explicit(&q->shared, 1, memory_order_release);
}

void hkt_solo_join(hkt_solo *q, uint8_t *mode) {
  uint8_t no = 0;
  if (q->ok && !(atomic_load(&q->req) & HKT_SOLO_FOR_GOOD) && atomic_compare_exchange_strong(&q->taken, &no, 1)) {
    *mode = HKT_SEQ_SOLO;   /* this first seq still through the lock: equally right */
    return;
  }
  go_shared(q);
  *mode = HKT_SEQ_SHARED;
}

void hkt_solo_borrow(hkt_solo *q) {
  if (!atomic_load_explicit(&q->shared, memory_order_acquire)) request(q, HKT_SOLO_BORROWED);
}

void hkt_solo_give_back(hkt_solo *q) {
  atomic_fetch_and(&q->req, (uint8_t)~HKT_SOLO_BORROWED);
}
