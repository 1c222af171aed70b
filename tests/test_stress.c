/* test_stress.c — many threads, every size, blocks passed between threads.
 *
 * Rounds of threads are created and destroyed. Each thread allocates
 * objects of every kind (tiny, mid, large, aligned, calloc), fills each
 * with a pattern derived from its address and size, and hands some of them
 * to other threads through a shared mailbox; whoever frees a block checks
 * its pattern first. Blocks outlive the thread that made them (the mailbox
 * carries them into the next round), so frees land on SuperSlabs whose
 * owner has exited. At the end every block is gone and the live counters
 * of hak_stats_get are back where they started.
 *
 * HAKMEM_TEST_SAN scales the work down (TSan runs ~10x slower). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* ---- scale ------------------------------------------------------------------ */

static int g_rounds, g_threads, g_ops, g_churn_threads;

static void choose_scale(void) {
  const char *san = getenv("HAKMEM_TEST_SAN");
  if (san && strcmp(san, "thread") == 0) {
    g_rounds = 4, g_threads = 3, g_ops = 2000, g_churn_threads = 24;
  } else if (san && *san) {
    g_rounds = 6, g_threads = 4, g_ops = 6000, g_churn_threads = 60;
  } else {
    g_rounds = 10, g_threads = 4, g_ops = 20000, g_churn_threads = 200;
  }
}

/* ---- blocks and their patterns ------------------------------------------- */

typedef struct block {
  unsigned char *p;
  size_t size;
  size_t align;   /* required alignment, 0 for plain malloc */
} block;

static inline uint64_t mix(uint64_t x) {
  x ^= x >> 33, x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33, x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

static uint64_t block_seed(const void *p, size_t size) { return mix((uintptr_t)p ^ (size * 0x9e3779b97f4a7c15ull)); }

/* Write the pattern of (p, size) over its first n bytes. */
static void pattern_fill(unsigned char *p, size_t size, size_t n) {
  uint64_t s = block_seed(p, size);
  size_t words = n / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = s + i * 0x9e3779b97f4a7c15ull;
    memcpy(p + i * 8, &w, 8);
  }
  if (words * 8 < n) {  /* the tail: the leading bytes of the next word */
    uint64_t w = s + words * 0x9e3779b97f4a7c15ull;
    memcpy(p + words * 8, &w, n - words * 8);
  }
}

/* Offset of the first of the n bytes at `at` that do not hold the pattern
 * of (p, size), or n. */
static size_t pattern_check(const unsigned char *at, const void *p, size_t size, size_t n) {
  uint64_t s = block_seed(p, size);
  size_t words = n / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = s + i * 0x9e3779b97f4a7c15ull, got;
    memcpy(&got, at + i * 8, 8);
    if (got != w)
      for (size_t j = 0; j < 8; j++)
        if (((const unsigned char *)&got)[j] != ((const unsigned char *)&w)[j]) return i * 8 + j;
  }
  if (words * 8 < n) {
    uint64_t w = s + words * 0x9e3779b97f4a7c15ull;
    for (size_t j = 0; words * 8 + j < n; j++)
      if (at[words * 8 + j] != ((const unsigned char *)&w)[j]) return words * 8 + j;
  }
  return n;
}

/* Worker threads cannot use cmocka's asserts: they count errors and keep
 * the first message for the main thread to report. */
static atomic_long g_errors;
static char g_first_error[512];
static pthread_mutex_t g_error_lock = PTHREAD_MUTEX_INITIALIZER;

static void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void report(const char *fmt, ...) {
  if (atomic_fetch_add(&g_errors, 1) > 0) return;
  pthread_mutex_lock(&g_error_lock);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_first_error, sizeof g_first_error, fmt, ap);
  va_end(ap);
  pthread_mutex_unlock(&g_error_lock);
}

static void block_verify(const block *b, const char *when) {
  size_t bad = pattern_check(b->p, b->p, b->size, b->size);
  if (bad != b->size)
    report("%s: block %p (size %zu, align %zu) corrupted at offset %zu", when, (void *)b->p, b->size,
           b->align, bad);
}

static void block_free(block *b, const char *when) {
  block_verify(b, when);
  hak_free(b->p);
  b->p = NULL;
}

/* ---- random sizes and kinds ----------------------------------------------- */

static inline uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

static size_t random_plain_size(uint64_t *rng) {
  uint64_t r = rnd(rng) % 1000;
  if (r < 600) return rnd(rng) % 1024 + 1;                  /* tiny */
  if (r < 900) return 1025 + rnd(rng) % (32 * KiB - 1024);  /* mid */
  if (r < 990) return rnd(rng) % 16 + (r & 1 ? 1017 : 1); /* edges: 1..16, 1017..1032 */
  if (r < 998) return 64 * KiB + rnd(rng) % (960 * KiB);    /* large */
  return 1 * MiB + rnd(rng) % (3 * MiB);                    /* larger */
}

/* Allocate one block of a random kind, filled with its pattern. */
static int block_new(block *b, uint64_t *rng) {
  uint64_t kind = rnd(rng) % 100;
  b->align = 0;
  if (kind < 80) {
    b->size = random_plain_size(rng);
    b->p = hak_malloc(b->size);
  } else if (kind < 90) {
    b->size = random_plain_size(rng);
    size_t n = rnd(rng) % 4 + 1;
    b->size = b->size / n + 1;
    b->p = hak_calloc(n, b->size);
    b->size *= n;
    if (b->p)
      for (size_t i = 0; i < b->size; i++)
        if (b->p[i]) { report("calloc(%zu, ...) byte %zu not zero", n, i); break; }
  } else {
    b->align = (size_t)16 << (rnd(rng) % 13);  /* 16 B .. 64 KiB */
    b->size = rnd(rng) % (kind < 97 ? 2048 : 70000) + 1;
    switch (kind % 3) {
      case 0:
        if (hak_posix_memalign((void **)&b->p, b->align, b->size) != 0) b->p = NULL;
        break;
      case 1:  /* C11 wants a multiple of the alignment */
        b->size = (b->size + b->align - 1) & ~(b->align - 1);
        b->p = hak_aligned_alloc(b->align, b->size);
        break;
      default: b->p = hak_memalign(b->align, b->size); break;
    }
  }
  if (!b->p) {
    report("allocation of %zu bytes (align %zu) failed: errno %d", b->size, b->align, errno);
    return -1;
  }
  size_t want = b->align ? b->align : (b->size >= 16 ? 16 : 8);
  if ((uintptr_t)b->p & (want - 1))
    report("block %p of %zu bytes is not %zu-byte aligned", (void *)b->p, b->size, want);
  if (hak_malloc_usable_size(b->p) < b->size)
    report("usable size of %p is %zu < %zu", (void *)b->p, hak_malloc_usable_size(b->p), b->size);
  pattern_fill(b->p, b->size, b->size);
  return 0;
}

/* Grow or shrink a block; the kept prefix must still hold the old pattern. */
static void block_realloc(block *b, uint64_t *rng) {
  block_verify(b, "before realloc");
  size_t old_size = b->size, new_size = random_plain_size(rng);
  unsigned char *old = b->p;
  unsigned char *q = hak_realloc(b->p, new_size);
  if (!q) {
    report("realloc(%p, %zu) failed", (void *)old, new_size);
    return;
  }
  size_t keep = old_size < new_size ? old_size : new_size;
  size_t bad = pattern_check(q, old, old_size, keep);
  if (bad != keep) report("realloc %zu -> %zu lost byte %zu", old_size, new_size, bad);
  b->p = q, b->size = new_size, b->align = 0;
  pattern_fill(q, new_size, new_size);
}

/* ---- the mailbox between threads ------------------------------------------ */

#define MAILBOX_CAP 4096
static struct {
  pthread_mutex_t lock;
  block items[MAILBOX_CAP];
  size_t n;
} g_box = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int mailbox_put(const block *b) {
  pthread_mutex_lock(&g_box.lock);
  int ok = g_box.n < MAILBOX_CAP;
  if (ok) g_box.items[g_box.n++] = *b;
  pthread_mutex_unlock(&g_box.lock);
  return ok;
}

/* Take a random item out (so blocks from many threads interleave). */
static int mailbox_take(block *out, uint64_t *rng) {
  pthread_mutex_lock(&g_box.lock);
  int ok = g_box.n > 0;
  if (ok) {
    size_t i = rnd(rng) % g_box.n;
    *out = g_box.items[i];
    g_box.items[i] = g_box.items[--g_box.n];
  }
  pthread_mutex_unlock(&g_box.lock);
  return ok;
}

/* ---- the worker ------------------------------------------------------------- */

#define LOCAL_CAP 256

typedef struct worker_arg {
  int round, index;
  int flush;   /* call hak_thread_flush before exiting (else thread exit must) */
} worker_arg;

static void *worker(void *argp) {
  worker_arg *arg = argp;
  uint64_t rng = mix((uint64_t)arg->round * 1000003 + (uint64_t)arg->index + 1) | 1;
  block local[LOCAL_CAP];
  size_t n = 0;
  for (int op = 0; op < g_ops && atomic_load(&g_errors) == 0; op++) {
    uint64_t r = rnd(&rng) % 100;
    if (r < 45) {                           /* allocate */
      if (n == LOCAL_CAP) {                 /* full: make room */
        size_t i = rnd(&rng) % n;
        block_free(&local[i], "local eviction");
        local[i] = local[--n];
      }
      if (block_new(&local[n], &rng) == 0) n++;
    } else if (r < 65) {                    /* hand one to another thread */
      if (n == 0) continue;
      size_t i = rnd(&rng) % n;
      if (!mailbox_put(&local[i])) block_free(&local[i], "mailbox full");
      local[i] = local[--n];
    } else if (r < 85) {                    /* free (or keep resizing) one from another thread */
      block b;
      if (!mailbox_take(&b, &rng)) continue;
      if (r < 70 && n < LOCAL_CAP) {
        block_realloc(&b, &rng);
        local[n++] = b;
      } else {
        block_free(&b, "remote free");
      }
    } else {                                /* free one of ours */
      if (n == 0) continue;
      size_t i = rnd(&rng) % n;
      block_free(&local[i], "local free");
      local[i] = local[--n];
    }
  }
  /* Leave: free half, hand the rest on so they outlive this thread. */
  for (size_t i = 0; i < n; i++) {
    if (i % 2 == 0 || !mailbox_put(&local[i])) block_free(&local[i], "thread end");
  }
  if (arg->flush) hak_thread_flush();
  return NULL;
}

/* ---- counters ------------------------------------------------------------- */

typedef struct totals {
  uint64_t allocs, frees, live_blocks, large_live_bytes;
} totals;

static totals stats_totals(const hak_stats *s) {
  totals t = {s->large_allocs, s->large_frees, 0, s->large_live_bytes};
  for (uint32_t i = 0; i < s->num_classes && i < HAK_NUM_CLASSES; i++) {
    t.allocs += s->cls[i].allocs;
    t.frees += s->cls[i].frees;
    t.live_blocks += s->cls[i].live_blocks;
  }
  return t;
}

/* Every class's live count and the large live bytes are back at `s0`. */
static void assert_live_back(const hak_stats *s0, const hak_stats *s1) {
  char msg[1024] = "";
  size_t len = 0;
  for (uint32_t i = 0; i < s1->num_classes && i < HAK_NUM_CLASSES; i++) {
    const hak_class_stats *a = &s0->cls[i], *b = &s1->cls[i];
    if (b->live_blocks != a->live_blocks && len < sizeof msg - 128)
      len += (size_t)snprintf(msg + len, sizeof msg - len,
                              " class %u (%u B): live %llu -> %llu (allocs +%llu, frees +%llu);", i,
                              b->block_size, (unsigned long long)a->live_blocks,
                              (unsigned long long)b->live_blocks, (unsigned long long)(b->allocs - a->allocs),
                              (unsigned long long)(b->frees - a->frees));
  }
  if (len) fail_msg("live blocks not back at the start value:%s", msg);
  if (s1->large_live_bytes != s0->large_live_bytes)
    fail_msg("large blocks: %llu live bytes at the end, %llu at the start",
             (unsigned long long)s1->large_live_bytes, (unsigned long long)s0->large_live_bytes);
  totals a = stats_totals(s0), b = stats_totals(s1);
  if (b.allocs - a.allocs != b.frees - a.frees)
    fail_msg("%llu allocations but %llu frees counted", (unsigned long long)(b.allocs - a.allocs),
             (unsigned long long)(b.frees - a.frees));
}

static void assert_no_worker_errors(void) {
  long n = atomic_load(&g_errors);
  if (n) fail_msg("%ld errors in worker threads; first: %s", n, g_first_error);
}

/* ---- tests ------------------------------------------------------------------- */

static void test_rounds_of_threads(void **state) {
  choose_scale();
  atomic_store(&g_errors, 0);
  hak_thread_flush();
  hak_stats s0, s1;
  hak_free(hak_malloc(1));   /* the main thread's heap exists before s0: it frees below */
  hak_stats_get(&s0);
  pthread_t tids[16];
  worker_arg args[16];
  for (int round = 0; round < g_rounds; round++) {
    for (int i = 0; i < g_threads; i++) {
      /* Odd rounds leave the cache flush to the thread-exit hook. */
      args[i] = (worker_arg){.round = round, .index = i, .flush = round % 2 == 0};
      assert_int_equal(pthread_create(&tids[i], NULL, worker, &args[i]), 0);
    }
    for (int i = 0; i < g_threads; i++) assert_int_equal(pthread_join(tids[i], NULL), 0);
    assert_no_worker_errors();
  }
  block b;
  uint64_t rng = 42;
  while (mailbox_take(&b, &rng)) block_free(&b, "final drain");
  assert_no_worker_errors();
  hak_thread_flush();
  hak_stats_get(&s1);
  assert_live_back(&s0, &s1);
  uint64_t made = (uint64_t)g_rounds * (uint64_t)g_threads;
  if (s1.threads_started - s0.threads_started != made || s1.threads_exited - s0.threads_exited != made)
    fail_msg("%llu threads ran; stats count %llu started, %llu exited", (unsigned long long)made,
             (unsigned long long)(s1.threads_started - s0.threads_started),
             (unsigned long long)(s1.threads_exited - s0.threads_exited));
  assert_true(s1.ss_live <= s1.ss_peak);
}

/* Short-lived threads each fill blocks and exit; the main thread frees
 * them all after the owners are gone (remote frees into orphaned or adopted
 * SuperSlabs). Two run at a time. */
#define CHURN_BLOCKS 400
typedef struct churn_arg {
  int index;
  block blocks[CHURN_BLOCKS];
} churn_arg;

static void *churn_worker(void *argp) {
  churn_arg *a = argp;
  uint64_t rng = mix((uint64_t)a->index + 77) | 1;
  for (int i = 0; i < CHURN_BLOCKS; i++) {
    block *b = &a->blocks[i];
    b->align = 0;
    b->size = rnd(&rng) % (i % 10 == 0 ? 8000 : 1024) + 1;
    b->p = hak_malloc(b->size);
    if (!b->p) { report("churn: malloc(%zu) failed", b->size); b->size = 0; continue; }
    pattern_fill(b->p, b->size, b->size);
  }
  /* Free a third here, so the thread's caches hold something at exit. */
  for (int i = 0; i < CHURN_BLOCKS; i += 3)
    if (a->blocks[i].p) block_free(&a->blocks[i], "churn own free");
  return NULL;
}

static void test_thread_churn(void **state) {
  choose_scale();
  atomic_store(&g_errors, 0);
  hak_thread_flush();
  hak_stats s0, s1;
  hak_stats_get(&s0);
  churn_arg *args = calloc(2, sizeof *args);
  assert_non_null(args);
  for (int t = 0; t < g_churn_threads; t += 2) {
    pthread_t tid[2];
    for (int k = 0; k < 2; k++) {
      args[k].index = t + k;
      assert_int_equal(pthread_create(&tid[k], NULL, churn_worker, &args[k]), 0);
    }
    for (int k = 0; k < 2; k++) assert_int_equal(pthread_join(tid[k], NULL), 0);
    for (int k = 0; k < 2; k++)
      for (int i = 0; i < CHURN_BLOCKS; i++)
        if (args[k].blocks[i].p) block_free(&args[k].blocks[i], "churn remote free");
    assert_no_worker_errors();
  }
  free(args);
  hak_thread_flush();
  hak_stats_get(&s1);
  assert_live_back(&s0, &s1);
}

int main(void) {
  /* A glob on test names, e.g. CMOCKA_TEST_FILTER='test_calloc*'. */
  const char *only = getenv("CMOCKA_TEST_FILTER");
  if (only && *only) cmocka_set_test_filter(only);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rounds_of_threads),
      cmocka_unit_test(test_thread_churn),
  };
  return cmocka_run_group_tests_name("stress", tests, NULL, NULL);
}
