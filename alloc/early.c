/* early.c — events made before the LTTng provider is loaded.
 *
 * With HAKMEM_LTTNG=1 the provider (libhakmem-lttng.so) can only be
 * dlopen()ed from the constructor, once libc is up; the process allocates
 * before that (the loader, libc, lttng-ust's own start-up during the
 * dlopen). A trace that misses those events does not replay. So from the
 * first malloc an early recorder keeps every event in order, in memory
 * mapped without malloc, and _hak_recorder_handover() gives them to the
 * provider's recorder (which stamps their seq) before attaching it. */
#include <string.h>
#include <sys/mman.h>
#include "internal.h"

typedef struct early_buf {
  hkt_event *ev;
  size_t n, cap;            /* events */
  char *str;                /* copies of str/bid: stable until handover */
  size_t str_used, str_cap;
} early_buf;

static hak_lock_t early_lock;
static early_buf early;
static const hak_recorder *early_next;   /* set by the handover */
static size_t early_lost;

static void *early_grow(void *old, size_t old_bytes, size_t new_bytes) {
  void *p = old ? mremap(old, old_bytes, new_bytes, MREMAP_MAYMOVE)
                : mmap(NULL, new_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

/* Strings and build-ids are copied to one 1 MiB area (pages cost only
 * when touched); it never moves, since kept events point into it. */
static const void *early_keep(const void *src, size_t n) {
  if (!early.str) {
    early.str = early_grow(NULL, 0, 1 << 20);
    early.str_cap = early.str ? 1 << 20 : 0;
  }
  if (early.str_used + n > early.str_cap) return NULL;
  char *d = early.str + early.str_used;
  memcpy(d, src, n);
  early.str_used += n;
  return d;
}

static void early_emit(void *ctx, hkt_event *ev) {
  (void)ctx;
  hak_lock(&early_lock);
  const hak_recorder *next = early_next;
  if (next) {  /* handed over while we were getting here */
    hak_unlock(&early_lock);
    next->emit(next->ctx, ev);
    return;
  }
  if (early.n == early.cap) {
    size_t cap = early.cap ? early.cap * 2 : 8192;
    hkt_event *e = early_grow(early.ev, early.cap * sizeof *e, cap * sizeof *e);
    if (!e) { early_lost++; hak_unlock(&early_lock); return; }
    early.ev = e;
    early.cap = cap;
  }
  hkt_event *d = &early.ev[early.n++];
  *d = *ev;
  if (ev->str) d->str = early_keep(ev->str, strlen(ev->str) + 1);
  if (ev->bid_len) d->bid = early_keep(ev->bid, ev->bid_len);
  hak_unlock(&early_lock);
}

static const hak_recorder early_rec = { .emit = early_emit };

void _hak_early_fork_child(void) { atomic_store_explicit(&early_lock.v, 0, memory_order_relaxed); }

/* From init, when HAKMEM_LTTNG=1: keep events until the handover. */
void _hak_early_start(void) { _hak_recorder_attach(&early_rec); }

void _hak_recorder_handover(const hak_recorder *r) {
  hak_lock(&early_lock);
  for (size_t i = 0; i < early.n; i++) r->emit(r->ctx, &early.ev[i]);
  if (early_lost) _hak_msg("HAKMEM_LTTNG=1: %zu events before the provider loaded were lost", early_lost);
  early_next = r;
  _hak_recorder_attach(r);
  hkt_event *ev = early.ev;
  size_t cap = early.cap;
  char *str = early.str;
  size_t str_cap = early.str_cap;
  memset(&early, 0, sizeof early);
  hak_unlock(&early_lock);
  if (ev) munmap(ev, cap * sizeof *ev);
  if (str) munmap(str, str_cap);
}
