/* debug.h — debug checks (debug.c) and fault injection (inject.c).
 *
 * HAKMEM_DEBUG is a ladder; each level adds to the one below:
 *   1  double free (the block is already free: in a cache, on a freelist, in
 *      a remote queue, in quarantine), invalid and interior free, stale free
 *      (into a SuperSlab no longer registered, named with its history), the
 *      SuperSlab release invariant (audited when a SuperSlab is retired or
 *      abandoned)
 *   2  canary after the requested size (checked at free), poison on free
 *      (0xdd, checked when the block is handed out again: write after free),
 *      freelist link validation at refill
 *   3  quarantine: freed blocks wait in a per-thread FIFO of
 *      HAKMEM_QUARANTINE bytes before the allocator may reuse them
 * At 0 each call site below is one predictable branch on _hak_cfg.debug
 * (or _hak_inject_kind), like HAK_REC_ON.
 *
 * Side tables, indexed by the arena chunk of a SuperSlab's base: a history
 * record per chunk (always: who registered and unregistered the SuperSlab
 * that was there, at which seq) and, when debugging, one state byte and
 * one requested size per block. Nothing is stored in the blocks. */
#ifndef HAK_DEBUG_H
#define HAK_DEBUG_H

#define HAK_DBG_ON()  unlikely(_hak_cfg.debug != 0)
#define HAK_DBG2_ON() unlikely(_hak_cfg.debug >= 2)
#define HAK_INJ_ON()  unlikely(_hak_inject_kind != 0)
#define HAK_NO_SEQ    UINT64_MAX   /* an event that was not recorded */

/* ---- detections (debug.c) ---- */
/* Report one detection: a DETECTION event when recording (emitted first,
 * so the line can give its seq), one stderr line naming the kind, the
 * pointer, the seq, the thread and the SuperSlab (ss, or the history of
 * the chunk p is in), then abort unless HAKMEM_ON_ERROR=continue.
 * `what` says what is wrong in a few words; aux2 goes into the event. */
void _hak_detect(unsigned det, const void *p, const hak_ss *ss, uint64_t aux2, const char *what);
/* The same in two steps, for a detection whose event must be emitted under
 * a lock (its place in seq order is the decision's) and whose report, which
 * may abort, must come after the lock is dropped. */
uint64_t _hak_detect_emit(unsigned det, const void *p, const hak_ss *ss, uint64_t aux2);
void _hak_detect_report(unsigned det, const void *p, const hak_ss *ss, const char *what, uint64_t seq,
                        const char *where);   /* where: as _hak_detect_where wrote it, or NULL: now */
void _hak_detect_where(char *out, size_t n, const void *p, const hak_ss *ss);   /* the SuperSlab, in words */

/* A block's state byte (side table; at level 1+, ss->dbg_state[index]). */
enum hak_blk_state { HAK_BLK_FRESH = 0, HAK_BLK_USED = 1, HAK_BLK_FREE = 2, HAK_BLK_QUAR = 3 };

/* SuperSlab history: called under the global lock with the seq of the
 * REGISTER/UNREGISTER event (HAK_NO_SEQ when not recording). Registering
 * sets ss->dbg_state when debugging. */
void _hak_dbg_ss_registered(hak_ss *ss, uint64_t seq);
void _hak_dbg_ss_unregistered(const hak_ss *ss, uint32_t tid, uint64_t seq);

/* ---- checks on the malloc family (debug.c), only when HAK_DBG_ON() ---- */
size_t _hak_dbg_pad(size_t size);                     /* room for a canary at level 2+ */
void   _hak_dbg_track(void *p, size_t req, unsigned cls);  /* a block is handed out */
int    _hak_dbg_free(void *p, hak_ss *ss);            /* 1: do not free p (reported or quarantined) */
unsigned _hak_dbg_realloc_check(void *p, const char **why);  /* a detection kind or 0, not reported */
void   _hak_dbg_resize(void *p, size_t req);          /* realloc in place */
void   _hak_dbg_freelist(hak_ss *ss, uint32_t want);  /* level 2: validate the links refill will follow */
void   _hak_dbg_audit(hak_heap *h, hak_ss *ss, int abandon);  /* release invariant */
void   _hak_dbg_quarantine_drain(void);               /* thread exit, hak_thread_flush */
void   _hak_free_raw(void *p);                        /* api.c: free with no check and no event */

/* ---- fault injection (inject.c) ---- */
enum hak_inject_kind {
  HAK_INJ_NONE = 0,
  HAK_INJ_EARLY_RELEASE,    /* at a refill: release the SuperSlab the cache just took blocks from */
  HAK_INJ_EARLY_DECREMENT,  /* at a refill: count one block back that is still out */
  HAK_INJ_LOST_DRAIN,       /* at a remote drain: the drained blocks vanish (counted back, never listed) */
  HAK_INJ_SKIP_PIN,         /* at a remote drain: one block is counted back twice */
  HAK_INJ_EARLY_RELEASE_FLUSH,  /* at a flush: release the SuperSlab of a block the cache keeps */
};
extern int _hak_inject_kind;
void   _hak_inject_parse(const char *spec);           /* config.c: HAKMEM_INJECT */
size_t _hak_inject_describe(char *buf, size_t n);     /* "kind:class@after" or "none" */
void   _hak_inject_refill(hak_heap *h, hak_ss *ss, unsigned cls, uint32_t n);
void   _hak_inject_flush(hak_heap *h, unsigned cls);
void   _hak_inject_drain(hak_heap *h, hak_ss *ss, uint32_t n);
void   _hak_inject_push(hak_heap *h, hak_ss *ss);
/* minimize's hold on the fault: count sites but fire only when armed, at
 * this thread's next site; then say at which count it fired. */
void   _hak_inject_hold(void);
void   _hak_inject_arm(void);
int    _hak_inject_fired_here(uint64_t *after);

#endif /* HAK_DEBUG_H */
