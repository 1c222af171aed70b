/* test_malloc_api.c — the malloc family's semantics, through the hak_* API.
 *
 * Every entry point and the glibc edge cases the issue lists: zero sizes,
 * NULL, overflow, alignment rules, errno, usable sizes, address ranges that
 * never overlap, and the statistics counters. Going through hak_* (not the
 * shim) keeps this runnable under ASan/TSan/UBSan, where the sanitizer owns
 * the process's malloc. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hakmem.h"
#include "hook.h"   /* the bypass arena and a recorder that counts */

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* ---- helpers ------------------------------------------------------------ */

/* A byte pattern that differs per block (seed) and per offset. */
static inline uint8_t pat(uint64_t seed, size_t i) {
  return (uint8_t)(seed * 0x9e3779b97f4a7c15ull >> 56) ^ (uint8_t)(i * 31 + (i >> 8));
}

/* Blocks past 64 KiB get the pattern on one byte per page and on their
 * last 64 bytes: every page is still touched, and a sanitizer build does
 * not spend minutes on a 64 MiB block. */
static inline size_t next_index(size_t i, size_t n) {
  if (i < 65536 || i + 64 >= n) return i + 1;
  size_t nx = (i | 4095) + 1;
  return nx + 64 >= n ? n - 64 : nx;
}

static void fill(void *p, size_t n, uint64_t seed) {
  uint8_t *b = p;
  for (size_t i = 0; i < n; i = next_index(i, n)) b[i] = pat(seed, i);
}

/* Index of the first of the bytes below `upto` that fill(p, filled, seed)
 * wrote and that do not hold the pattern, or upto. */
static size_t check_upto(const void *p, size_t filled, size_t upto, uint64_t seed) {
  const uint8_t *b = p;
  for (size_t i = 0; i < upto && i < filled; i = next_index(i, filled))
    if (b[i] != pat(seed, i)) return i;
  return upto;
}

static size_t check(const void *p, size_t n, uint64_t seed) { return check_upto(p, n, n, seed); }

static int is_aligned(const void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* The class that serves `size`: the smallest whose block fits it; -1 if the
 * size goes past every class (a large block). */
static int class_of(const hak_stats *s, size_t size) {
  for (uint32_t i = 0; i < s->num_classes && i < HAK_NUM_CLASSES; i++)
    if (s->cls[i].block_size >= size) return (int)i;
  return -1;
}

static uint64_t total_allocs(const hak_stats *s) {
  uint64_t n = s->large_allocs;
  for (uint32_t i = 0; i < s->num_classes && i < HAK_NUM_CLASSES; i++) n += s->cls[i].allocs;
  return n;
}

static uint64_t total_frees(const hak_stats *s) {
  uint64_t n = s->large_frees;
  for (uint32_t i = 0; i < s->num_classes && i < HAK_NUM_CLASSES; i++) n += s->cls[i].frees;
  return n;
}

/* Live blocks must never overlap: sort [start, start+usable) ranges. */
typedef struct range { uintptr_t lo, hi; } range;

static int range_cmp(const void *a, const void *b) {
  const range *x = a, *y = b;
  return x->lo < y->lo ? -1 : x->lo > y->lo;
}

static void assert_no_overlap(void **ptrs, size_t n) {
  range *r = calloc(n, sizeof *r);
  assert_non_null(r);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (!ptrs[i]) continue;
    size_t us = hak_malloc_usable_size(ptrs[i]);
    r[k].lo = (uintptr_t)ptrs[i];
    r[k].hi = (uintptr_t)ptrs[i] + (us ? us : 1);
    k++;
  }
  qsort(r, k, sizeof *r, range_cmp);
  for (size_t i = 1; i < k; i++) {
    if (r[i - 1].hi > r[i].lo)
      fail_msg("blocks overlap: [%#lx, %#lx) and [%#lx, %#lx)", (unsigned long)r[i - 1].lo,
               (unsigned long)r[i - 1].hi, (unsigned long)r[i].lo, (unsigned long)r[i].hi);
  }
  free(r);
}

/* ---- malloc, free, usable size ---------------------------------------- */

static void test_malloc_zero(void **state) {
  void *p = hak_malloc(0), *q = hak_malloc(0);
  assert_non_null(p);
  assert_non_null(q);
  assert_ptr_not_equal(p, q);
  void *both[2] = {p, q};
  assert_no_overlap(both, 2);
  hak_free(p);
  hak_free(q);
  /* calloc and realloc with zero sizes give unique pointers too. */
  void *c = hak_calloc(0, 16), *d = hak_calloc(16, 0);
  assert_non_null(c);
  assert_non_null(d);
  assert_ptr_not_equal(c, d);
  hak_free(c);
  hak_free(d);
}

static void test_free_null_keeps_errno(void **state) {
  errno = 1234;
  hak_free(NULL);
  assert_int_equal(errno, 1234);
  void *p = hak_malloc(100), *big = hak_malloc(8 * MiB);
  assert_non_null(p);
  assert_non_null(big);
  errno = 4321;
  hak_free(p);
  hak_free(big);
  assert_int_equal(errno, 4321);  /* glibc's free preserves errno */
}

static void test_basic_alignment(void **state) {
  /* glibc gives 16-byte alignment to every block of 16 bytes or more. */
  for (size_t s = 1; s <= 5000; s += (s < 64 ? 1 : 37)) {
    void *p = hak_malloc(s);
    assert_non_null(p);
    size_t want = s >= 16 ? 16 : 8;
    if (!is_aligned(p, want)) fail_msg("malloc(%zu) = %p, not %zu-byte aligned", s, p, want);
    hak_free(p);
  }
  for (size_t s = 64 * KiB; s <= 8 * MiB; s *= 2) {
    void *p = hak_malloc(s + 3);
    assert_non_null(p);
    assert_true(is_aligned(p, 16));
    hak_free(p);
  }
}

static void test_usable_size(void **state) {
  assert_int_equal(hak_malloc_usable_size(NULL), 0);
  static const size_t sizes[] = {0, 1, 7, 8, 9, 24, 100, 1000, 1024, 1025, 4095, 4096, 4097,
                                 30000, 65536, 200000, 1 * MiB, 1 * MiB + 1, 3 * MiB + 5};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    void *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    size_t us = hak_malloc_usable_size(p);
    if (us < sizes[i]) fail_msg("malloc_usable_size(malloc(%zu)) = %zu", sizes[i], us);
    memset(p, 0xA5, us);  /* the whole usable area is the caller's */
    hak_free(p);
  }
}

/* Every size 0..5000 live at once: unique, disjoint, writable up to usable. */
static void test_every_small_size(void **state) {
  enum { N = 5001 };
  void **ptrs = calloc(N, sizeof *ptrs);
  assert_non_null(ptrs);
  for (size_t s = 0; s < N; s++) {
    ptrs[s] = hak_malloc(s);
    if (!ptrs[s]) fail_msg("malloc(%zu) = NULL", s);
    size_t us = hak_malloc_usable_size(ptrs[s]);
    if (us < s) fail_msg("malloc_usable_size(malloc(%zu)) = %zu", s, us);
    fill(ptrs[s], us, s + 1);
  }
  assert_no_overlap(ptrs, N);
  for (size_t s = 0; s < N; s++) {
    size_t us = hak_malloc_usable_size(ptrs[s]);
    size_t bad = check(ptrs[s], us, s + 1);
    if (bad != us) fail_msg("block of size %zu at %p corrupted at offset %zu", s, ptrs[s], bad);
  }
  /* Free in a scrambled order (a fixed permutation: 7919 is prime). */
  for (size_t k = 0; k < N; k++) {
    size_t s = (k * 7919) % N;
    hak_free(ptrs[s]);
  }
  free(ptrs);
}

/* Sizes sampled up to 64 MiB: powers of two, their neighbours and a
 * log-uniform sequence from a fixed seed; a window of them stays live. */
static void test_sampled_sizes(void **state) {
  enum { WINDOW = 12 };
  size_t sizes[400];
  size_t n = 0;
  for (int k = 0; k <= 26; k++) {
    size_t b = (size_t)1 << k;
    sizes[n++] = b - 1;
    sizes[n++] = b;
    sizes[n++] = b + 1;
    sizes[n++] = b + b / 2;
  }
  uint64_t x = 0x2545F4914F6CDD1Dull;
  while (n < sizeof sizes / sizeof *sizes) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    int lg = (int)(x % 26);
    sizes[n++] = ((size_t)1 << lg) + (size_t)((x >> 8) % ((size_t)1 << lg));
  }
  void *live[WINDOW] = {0};
  size_t live_size[WINDOW] = {0};
  for (size_t i = 0; i < n; i++) {
    size_t slot = i % WINDOW;
    if (live[slot]) {
      size_t bad = check(live[slot], live_size[slot], live_size[slot] + slot);
      if (bad != live_size[slot])
        fail_msg("block of size %zu corrupted at offset %zu", live_size[slot], bad);
      hak_free(live[slot]);
    }
    size_t s = sizes[i] > 64 * MiB ? 64 * MiB : sizes[i];
    live[slot] = hak_malloc(s);
    if (!live[slot]) fail_msg("malloc(%zu) = NULL", s);
    if (hak_malloc_usable_size(live[slot]) < s) fail_msg("usable size of malloc(%zu) too small", s);
    live_size[slot] = s;
    fill(live[slot], s, s + slot);
    assert_no_overlap(live, WINDOW);
  }
  for (size_t i = 0; i < WINDOW; i++) {
    assert_int_equal(check(live[i], live_size[i], live_size[i] + i), live_size[i]);
    hak_free(live[i]);
  }
}

/* ---- calloc ------------------------------------------------------------- */

static void test_calloc_zeroes(void **state) {
  static const size_t sizes[] = {1, 8, 24, 100, 512, 1024, 1025, 3000, 4096, 20000,
                                 70000, 1 * MiB, 3 * MiB + 17};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    size_t s = sizes[i];
    /* Dirty some blocks of this size first so calloc is likely to reuse them. */
    void *dirty[8];
    for (int k = 0; k < 8; k++) {
      dirty[k] = hak_malloc(s);
      assert_non_null(dirty[k]);
      memset(dirty[k], 0xEE, hak_malloc_usable_size(dirty[k]));
    }
    for (int k = 7; k >= 0; k--) hak_free(dirty[k]);
    for (int k = 0; k < 8; k++) {
      uint8_t *p = hak_calloc(1, s);
      assert_non_null(p);
      for (size_t j = 0; j < s; j++)
        if (p[j]) fail_msg("calloc(1, %zu): byte %zu is %#x", s, j, p[j]);
      dirty[k] = p;
    }
    for (int k = 0; k < 8; k++) hak_free(dirty[k]);
  }
  /* n*size split the other way round. */
  uint8_t *p = hak_calloc(1000, 3);
  assert_non_null(p);
  for (size_t j = 0; j < 3000; j++) assert_int_equal(p[j], 0);
  hak_free(p);
}

static void test_calloc_overflow(void **state) {
  static const size_t pairs[][2] = {
      {SIZE_MAX, 2}, {2, SIZE_MAX}, {SIZE_MAX / 2 + 1, 2}, {(size_t)1 << 32, (size_t)1 << 32},
      {SIZE_MAX, SIZE_MAX}, {(SIZE_MAX / 16) + 1, 16}};
  for (size_t i = 0; i < sizeof pairs / sizeof *pairs; i++) {
    errno = 0;
    void *p = hak_calloc(pairs[i][0], pairs[i][1]);
    if (p) fail_msg("calloc(%zu, %zu) = %p, want NULL", pairs[i][0], pairs[i][1], p);
    assert_int_equal(errno, ENOMEM);
  }
}

/* ---- realloc, reallocarray -------------------------------------------- */

static void test_realloc_null_and_zero(void **state) {
  hak_stats s0, s1;
  void *p = hak_realloc(NULL, 200);  /* = malloc(200) */
  assert_non_null(p);
  assert_true(hak_malloc_usable_size(p) >= 200);
  fill(p, 200, 9);
  /* realloc(p, 0) frees p and returns NULL, as glibc does. */
  hak_stats_get(&s0);
  void *q = hak_realloc(p, 0);
  hak_stats_get(&s1);
  assert_null(q);
  assert_int_equal(total_frees(&s1) - total_frees(&s0), 1);
  assert_int_equal(total_allocs(&s1) - total_allocs(&s0), 0);
  /* realloc(NULL, 0) is malloc(0): a unique pointer. */
  void *z = hak_realloc(NULL, 0);
  assert_non_null(z);
  hak_free(z);
}

/* Contents survive growing and shrinking across tiny -> mid -> large. */
static void test_realloc_contents(void **state) {
  static const size_t steps[] = {1, 8, 16, 100, 1000, 1024, 1025, 2048, 5000, 40000, 65536,
                                 200000, 1 * MiB, 3 * MiB, 10 * MiB, 3 * MiB + 1, 200001,
                                 4097, 1023, 64, 7, 3000, 9 * MiB, 12};
  uint8_t *p = NULL;
  size_t cur = 0;
  for (size_t i = 0; i < sizeof steps / sizeof *steps; i++) {
    size_t n = steps[i];
    uint8_t *q = hak_realloc(p, n);
    if (!q) fail_msg("realloc(%p, %zu) = NULL", (void *)p, n);
    size_t keep = cur < n ? cur : n;
    size_t bad = check_upto(q, cur, keep, 77);
    if (bad != keep) fail_msg("realloc %zu -> %zu lost byte %zu", cur, n, bad);
    assert_true(hak_malloc_usable_size(q) >= n);
    fill(q, n, 77);
    p = q;
    cur = n;
  }
  hak_free(p);
}

/* A realloc that cannot be served leaves the block untouched. */
static void test_realloc_failure_keeps_block(void **state) {
  static const size_t sizes[] = {40, 3000, 2 * MiB};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    uint8_t *p = hak_malloc(sizes[i]);
    assert_non_null(p);
    fill(p, sizes[i], 5);
    errno = 0;
    assert_null(hak_realloc(p, SIZE_MAX));
    assert_int_equal(errno, ENOMEM);
    errno = 0;
    assert_null(hak_realloc(p, SIZE_MAX / 2 + 1));
    assert_int_equal(errno, ENOMEM);
    assert_int_equal(check(p, sizes[i], 5), sizes[i]);
    hak_free(p);
  }
}

static void test_reallocarray(void **state) {
  uint32_t *a = hak_reallocarray(NULL, 10, sizeof(uint32_t));
  assert_non_null(a);
  for (uint32_t i = 0; i < 10; i++) a[i] = i * 3;
  uint32_t *b = hak_reallocarray(a, 100000, sizeof(uint32_t));
  assert_non_null(b);
  for (uint32_t i = 0; i < 10; i++) assert_int_equal(b[i], i * 3);
  /* Overflow of n*size: NULL, ENOMEM, the old block intact. */
  errno = 0;
  assert_null(hak_reallocarray(b, SIZE_MAX, 2));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(hak_reallocarray(b, (size_t)1 << 33, (size_t)1 << 33));
  assert_int_equal(errno, ENOMEM);
  errno = 0;
  assert_null(hak_reallocarray(NULL, SIZE_MAX / 4, 8));
  assert_int_equal(errno, ENOMEM);
  for (uint32_t i = 0; i < 10; i++) assert_int_equal(b[i], i * 3);
  hak_free(b);
}

/* ---- aligned entry points -------------------------------------------- */

static void test_posix_memalign_einval(void **state) {
  static const size_t bad[] = {0, 1, 2, 3, 4, 12, 24, 48, 100, 4095, 4097, (size_t)3 << 20,
                               SIZE_MAX, (SIZE_MAX / 2) + 2};
  void *sentinel = (void *)(uintptr_t)0xdeadbeef;
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    void *out = sentinel;
    int rc = hak_posix_memalign(&out, bad[i], 64);
    if (rc != EINVAL) fail_msg("posix_memalign(align %zu) returned %d, want EINVAL", bad[i], rc);
    assert_ptr_equal(out, sentinel);
  }
  /* A valid alignment but an impossible size: ENOMEM, out untouched. */
  void *out = sentinel;
  assert_int_equal(hak_posix_memalign(&out, 64, SIZE_MAX), ENOMEM);
  assert_ptr_equal(out, sentinel);
  assert_int_equal(hak_posix_memalign(&out, 4096, SIZE_MAX - 8192), ENOMEM);
  assert_ptr_equal(out, sentinel);
}

static void test_posix_memalign_ok(void **state) {
  static const size_t mult[] = {0, 1, 2, 3};  /* size = align*mult + extra */
  static const size_t extra[] = {1, 7, 100, 5000};
  for (size_t a = sizeof(void *); a <= 1 * MiB; a *= 2) {
    void *ptrs[1 + 4 * 4];
    size_t n = 0;
    void *z = (void *)1;
    assert_int_equal(hak_posix_memalign(&z, a, 0), 0);  /* size 0: unique or NULL, freeable */
    ptrs[n++] = z;
    for (size_t m = 0; m < 4; m++) {
      for (size_t e = 0; e < 4; e++) {
        size_t size = a * mult[m] + extra[e];
        void *p = (void *)1;
        int rc = hak_posix_memalign(&p, a, size);
        if (rc != 0) fail_msg("posix_memalign(align %zu, size %zu) = %d", a, size, rc);
        if (!p || !is_aligned(p, a)) fail_msg("posix_memalign(align %zu, size %zu) gave %p", a, size, p);
        if (hak_malloc_usable_size(p) < size) fail_msg("usable size < %zu for align %zu", size, a);
        fill(p, size, size ^ a);
        ptrs[n++] = p;
      }
    }
    assert_no_overlap(ptrs, n);
    for (size_t i = 1; i < n; i++) {
      size_t size = a * mult[(i - 1) / 4] + extra[(i - 1) % 4];
      size_t bad = check(ptrs[i], size, size ^ a);
      if (bad != size) fail_msg("aligned block (align %zu, size %zu) corrupted at %zu", a, size, bad);
    }
    for (size_t i = 0; i < n; i++) hak_free(ptrs[i]);
  }
}

static void test_aligned_alloc_memalign(void **state) {
  for (size_t a = 1; a <= 1 * MiB; a *= 2) {
    static const size_t sizes[] = {1, 64, 1000, 4096, 70000};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
      size_t s = sizes[i] < a ? a : sizes[i];
      void *p = hak_aligned_alloc(a, s), *q = hak_memalign(a, sizes[i]);
      if (!p || !is_aligned(p, a)) fail_msg("aligned_alloc(%zu, %zu) = %p", a, s, p);
      if (!q || !is_aligned(q, a)) fail_msg("memalign(%zu, %zu) = %p", a, sizes[i], q);
      assert_true(hak_malloc_usable_size(p) >= s);
      assert_true(hak_malloc_usable_size(q) >= sizes[i]);
      memset(p, 1, s);
      memset(q, 2, sizes[i]);
      hak_free(p);
      hak_free(q);
    }
  }
  /* Not a power of two: glibc rounds memalign's alignment up to the next
   * power of two (aligned_alloc may instead fail with EINVAL). */
  static const size_t odd[] = {24, 48, 100, 3000};
  for (size_t i = 0; i < sizeof odd / sizeof *odd; i++) {
    size_t up = 1;
    while (up < odd[i]) up *= 2;
    errno = 0;
    void *q = hak_memalign(odd[i], 100);
    if (!q) {
      assert_int_equal(errno, EINVAL);
    } else {
      if (!is_aligned(q, up)) fail_msg("memalign(%zu, 100) = %p, not %zu-aligned", odd[i], q, up);
      hak_free(q);
    }
    errno = 0;
    void *p = hak_aligned_alloc(odd[i], 100);
    if (!p) {
      assert_int_equal(errno, EINVAL);
    } else {
      if (!is_aligned(p, up)) fail_msg("aligned_alloc(%zu, 100) = %p, not %zu-aligned", odd[i], p, up);
      hak_free(p);
    }
  }
}

static void test_valloc_pvalloc(void **state) {
  size_t pg = page_size();
  static const size_t sizes[] = {1, 100, 4095, 4096, 4097, 10000, 1 * MiB + 1};
  for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
    size_t s = sizes[i];
    void *v = hak_valloc(s), *pv = hak_pvalloc(s);
    if (!v || !is_aligned(v, pg)) fail_msg("valloc(%zu) = %p", s, v);
    if (!pv || !is_aligned(pv, pg)) fail_msg("pvalloc(%zu) = %p", s, pv);
    size_t rounded = (s + pg - 1) / pg * pg;
    assert_true(hak_malloc_usable_size(v) >= s);
    if (hak_malloc_usable_size(pv) < rounded)
      fail_msg("pvalloc(%zu): usable %zu < %zu (whole pages)", s, hak_malloc_usable_size(pv), rounded);
    memset(v, 3, s);
    memset(pv, 4, rounded);  /* pvalloc's rounding is the caller's to use */
    hak_free(v);
    hak_free(pv);
  }
}

/* ---- absurd sizes -------------------------------------------------------- */

/* Reuse before carving: once a SuperSlab's blocks are freed, new blocks of
 * its class come from them, not from fresh memory of the next SuperSlab
 * (which would make the pages a working set touches grow). In a thread of
 * its own, so that its heap starts empty. 1000-byte blocks: class 1024,
 * 1020 to a 1 MiB SuperSlab. */
#define REUSE_N 1500
static void *reuse_thread(void *arg) {
  static void *p[REUSE_N];
  int *in_first = arg;
  for (int i = 0; i < REUSE_N; i++) p[i] = hak_malloc(1000);
  uintptr_t first = (uintptr_t)p[0] & ~(uintptr_t)0xfffff;
  int freed = 0;
  for (int i = 0; i < REUSE_N && freed < 500; i++)
    if (((uintptr_t)p[i] & ~(uintptr_t)0xfffff) == first) { hak_free(p[i]); p[i] = NULL; freed++; }
  *in_first = 0;
  for (int i = 0; i < REUSE_N; i++)
    if (!p[i]) { p[i] = hak_malloc(1000); *in_first += ((uintptr_t)p[i] & ~(uintptr_t)0xfffff) == first; }
  for (int i = 0; i < REUSE_N; i++) hak_free(p[i]);
  return NULL;
}
static void test_reuse_before_carving(void **state) {
  (void)state;
  int in_first = -1;
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, reuse_thread, &in_first), 0);
  pthread_join(t, NULL);
  if (in_first < 450) fail_msg("of 500 blocks allocated after 500 of the first SuperSlab were freed, %d came from it", in_first);
}

/* The arena of the recorder's own library loads (alloc/bypass.c): while
 * bypassing, every entry point serves from it with no event; its blocks
 * can be freed and reallocated later, still with no event; a heap block
 * reallocated while bypassing is freed as the program's (an event). */
static int bypass_events;
static void bypass_emit(void *ctx, hkt_event *ev) { (void)ctx, (void)ev; bypass_events++; }
static void bypass_call(uint64_t m, uint64_t p, uint64_t s, uint64_t a, uint64_t a2, uint64_t c) {
  (void)m, (void)p, (void)s, (void)a, (void)a2, (void)c;
  bypass_events++;
}
static const hak_recorder bypass_counter = {.emit = bypass_emit, .emit_call = bypass_call};

static void test_bypass_arena(void **state) {
  (void)state;
  void *heap = hak_malloc(64);   /* a heap block from before */
  memset(heap, 7, 64);
  _hak_recorder_attach(&bypass_counter);
  _hak_bypass_begin();
  char *m = hak_malloc(100);
  unsigned char *c = hak_calloc(10, 30);
  void *a = hak_aligned_alloc(256, 300);
  void *pm = NULL;
  int pe = hak_posix_memalign(&pm, 64, 40);
  memset(m, 'x', 100);
  char *r = hak_realloc(m, 5000);
  void *moved = hak_realloc(heap, 128);
  _hak_bypass_end();
  int during = bypass_events;
  _hak_recorder_attach(NULL);
  assert_int_equal(during, 1);   /* only the free of the heap block */
  assert_non_null(m);
  assert_non_null(r);
  assert_non_null(a);
  assert_int_equal(pe, 0);
  assert_true(((uintptr_t)a & 255) == 0 && ((uintptr_t)pm & 63) == 0);
  for (int i = 0; i < 300; i++) assert_int_equal(c[i], 0);
  for (int i = 0; i < 100; i++) assert_int_equal(r[i], 'x');
  assert_true(hak_malloc_usable_size(r) >= 5000);
  assert_int_equal(((unsigned char *)moved)[63], 7);
  hak_stats st;
  hak_stats_get(&st);
  assert_true((uintptr_t)r < st.arena_base || (uintptr_t)r >= st.arena_base + ((uint64_t)1 << 40));   /* not the heap's */
  /* later, recorded: frees and reallocs of arena blocks make no event */
  _hak_recorder_attach(&bypass_counter);
  bypass_events = 0;
  void *r2 = hak_realloc(r, 64);
  assert_non_null(r2);
  assert_int_equal(((char *)r2)[63], 'x');
  hak_free(r2);
  hak_free(c);
  hak_free(a);
  hak_free(pm);
  hak_free(moved);
  _hak_recorder_attach(NULL);
  assert_int_equal(bypass_events, 0);
}

static void test_huge_sizes(void **state) {
  static const size_t huge[] = {SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4096, SIZE_MAX / 2 + 1,
                                (size_t)PTRDIFF_MAX + 1, (size_t)1 << 60, (size_t)1 << 50};
  for (size_t i = 0; i < sizeof huge / sizeof *huge; i++) {
    size_t h = huge[i];
#define EXPECT_ENOMEM(call)                                                   \
  do {                                                                        \
    errno = 0;                                                                \
    void *r_ = (call);                                                        \
    if (r_) fail_msg("%s with size %#zx = %p, want NULL", #call, h, r_);      \
    if (errno != ENOMEM) fail_msg("%s with size %#zx: errno %d, want ENOMEM", #call, h, errno); \
  } while (0)
    EXPECT_ENOMEM(hak_malloc(h));
    EXPECT_ENOMEM(hak_calloc(1, h));
    EXPECT_ENOMEM(hak_calloc(h, 1));
    EXPECT_ENOMEM(hak_realloc(NULL, h));
    EXPECT_ENOMEM(hak_memalign(64, h));
    EXPECT_ENOMEM(hak_aligned_alloc(64, h));
    EXPECT_ENOMEM(hak_valloc(h));
    EXPECT_ENOMEM(hak_pvalloc(h));
#undef EXPECT_ENOMEM
    void *out = NULL;
    assert_int_equal(hak_posix_memalign(&out, 64, h), ENOMEM);
    assert_null(out);
  }
  /* The heap still works afterwards. */
  void *p = hak_malloc(100);
  assert_non_null(p);
  hak_free(p);
}

/* ---- statistics ------------------------------------------------------------ */

static void test_stats_layout(void **state) {
  hak_stats s;
  memset(&s, 0xff, sizeof s);
  hak_stats_get(&s);
  assert_true(s.num_classes >= 8 && s.num_classes <= HAK_NUM_CLASSES);
  /* Tiny C0..C7 span 8..1024 bytes; classes grow strictly. */
  assert_int_equal(s.cls[0].block_size, 8);
  assert_int_equal(s.cls[7].block_size, 1024);
  for (uint32_t i = 1; i < s.num_classes; i++)
    if (s.cls[i].block_size <= s.cls[i - 1].block_size)
      fail_msg("class %u block %u not above class %u block %u", i, s.cls[i].block_size, i - 1,
               s.cls[i - 1].block_size);
  for (uint32_t i = 0; i < s.num_classes; i++) {
    assert_true(s.cls[i].frees <= s.cls[i].allocs);
    assert_true(s.cls[i].live_blocks <= s.cls[i].peak_live_blocks);
  }
  assert_true(s.large_live_bytes <= s.large_peak_bytes);
  assert_true(s.ss_live <= s.ss_peak);
  assert_true(s.os_committed_bytes <= s.os_reserved_bytes);
  assert_true(s.arena_base != 0);
}

/* allocs, frees and live blocks move by exactly the calls made. */
static void check_class_counters(size_t size, int n) {
  hak_stats s0, s1, s2;
  hak_stats_get(&s0);
  int c = class_of(&s0, size);
  if (c < 0) fail_msg("no class serves %zu bytes", size);
  void **p = calloc((size_t)n, sizeof *p);
  assert_non_null(p);
  for (int i = 0; i < n; i++) assert_non_null(p[i] = hak_malloc(size));
  hak_stats_get(&s1);
  for (int i = 0; i < n; i++) hak_free(p[i]);
  hak_thread_flush();
  hak_stats_get(&s2);
  free(p);
  const hak_class_stats *a = &s0.cls[c], *b = &s1.cls[c], *d = &s2.cls[c];
  if (b->allocs - a->allocs != (uint64_t)n)
    fail_msg("size %zu (class %d, %u bytes): allocs moved by %llu, want %d", size, c,
             a->block_size, (unsigned long long)(b->allocs - a->allocs), n);
  if (d->frees - b->frees != (uint64_t)n)
    fail_msg("size %zu (class %d): frees moved by %llu, want %d", size, c,
             (unsigned long long)(d->frees - b->frees), n);
  if (b->live_blocks - a->live_blocks != (uint64_t)n)
    fail_msg("size %zu (class %d): live_blocks moved by %lld with %d blocks live", size, c,
             (long long)(b->live_blocks - a->live_blocks), n);
  if (d->live_blocks != a->live_blocks)
    fail_msg("size %zu (class %d): live_blocks %llu after freeing all, was %llu", size, c,
             (unsigned long long)d->live_blocks, (unsigned long long)a->live_blocks);
  assert_true(b->peak_live_blocks >= b->live_blocks);
  assert_int_equal(s1.large_allocs, s0.large_allocs);
}

static void test_stats_class_counters(void **state) {
  hak_stats s;
  hak_stats_get(&s);
  check_class_counters(1, 50);
  check_class_counters(40, 300);
  check_class_counters(1024, 100);
  check_class_counters(1025, 40);  /* the first mid class */
  check_class_counters(3000, 40);
  uint32_t last = s.cls[s.num_classes - 1].block_size;
  check_class_counters(last, 5);
}

static void test_stats_large(void **state) {
  hak_stats s0, s1, s2;
  hak_stats_get(&s0);
  size_t big = (size_t)s0.cls[s0.num_classes - 1].block_size + 1;
  if (big < 4 * MiB) big = 4 * MiB;
  void *p = hak_malloc(big);
  assert_non_null(p);
  hak_stats_get(&s1);
  hak_free(p);
  hak_stats_get(&s2);
  assert_int_equal(s1.large_allocs - s0.large_allocs, 1);
  assert_int_equal(s2.large_frees - s1.large_frees, 1);
  assert_true(s1.large_live_bytes - s0.large_live_bytes >= big);
  assert_int_equal(s2.large_live_bytes, s0.large_live_bytes);
  assert_true(s1.large_peak_bytes >= s1.large_live_bytes);
  /* Just past the largest class is large too. */
  size_t edge = (size_t)s0.cls[s0.num_classes - 1].block_size + 1;
  hak_stats_get(&s0);
  p = hak_malloc(edge);
  assert_non_null(p);
  hak_stats_get(&s1);
  hak_free(p);
  assert_int_equal(s1.large_allocs - s0.large_allocs, 1);
}

/* calloc, realloc and the aligned calls count as allocations too. */
static void test_stats_every_entry_point(void **state) {
  hak_stats s0, s1;
  hak_stats_get(&s0);
  void *p[7];
  p[0] = hak_calloc(4, 10);
  p[1] = hak_realloc(NULL, 50);
  p[2] = hak_reallocarray(NULL, 5, 10);
  assert_int_equal(hak_posix_memalign(&p[3], 64, 100), 0);
  p[4] = hak_aligned_alloc(256, 256);
  p[5] = hak_memalign(32, 10);
  p[6] = hak_valloc(100);
  for (int i = 0; i < 7; i++) assert_non_null(p[i]);
  hak_stats_get(&s1);
  assert_int_equal(total_allocs(&s1) - total_allocs(&s0), 7);
  for (int i = 0; i < 7; i++) hak_free(p[i]);
  hak_stats_get(&s0);
  assert_int_equal(total_frees(&s0) - total_frees(&s1), 7);
}

/* A block freed by another thread than the one that allocated it counts as
 * a free of its class, whether its owner still runs or has exited. */
typedef struct xthread {
  void *blocks[64];
  size_t size;
  pthread_barrier_t *hold;  /* non-NULL: stay alive until the frees are done */
} xthread;

static void *alloc_in_thread(void *arg) {
  xthread *x = arg;
  for (int i = 0; i < 64; i++) x->blocks[i] = hak_malloc(x->size);
  if (x->hold) {
    pthread_barrier_wait(x->hold);  /* blocks are ready */
    pthread_barrier_wait(x->hold);  /* the main thread has freed them */
  }
  hak_thread_flush();
  return NULL;
}

static void check_cross_thread_frees(size_t size, int owner_alive) {
  hak_stats s0, s1;
  pthread_barrier_t hold;
  xthread x = {.size = size, .hold = owner_alive ? &hold : NULL};
  if (owner_alive) pthread_barrier_init(&hold, NULL, 2);
  hak_thread_flush();
  hak_stats_get(&s0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, alloc_in_thread, &x), 0);
  if (owner_alive) pthread_barrier_wait(&hold);
  else pthread_join(t, NULL);
  for (int i = 0; i < 64; i++) {
    assert_non_null(x.blocks[i]);
    hak_free(x.blocks[i]);
  }
  hak_thread_flush();
  if (owner_alive) {
    pthread_barrier_wait(&hold);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&hold);
  }
  hak_stats_get(&s1);
  int c = class_of(&s0, size);
  assert_true(c >= 0);
  const hak_class_stats *a = &s0.cls[c], *b = &s1.cls[c];
  if (b->allocs - a->allocs != 64 || b->frees - a->frees != 64 || b->live_blocks != a->live_blocks)
    fail_msg("64 blocks of %zu B allocated in a thread (%s) and freed in another: class %d allocs +%llu, "
             "frees +%llu (want 64 each), live %llu -> %llu, remote_frees +%llu", size,
             owner_alive ? "still running" : "exited", c, (unsigned long long)(b->allocs - a->allocs),
             (unsigned long long)(b->frees - a->frees), (unsigned long long)a->live_blocks,
             (unsigned long long)b->live_blocks, (unsigned long long)(b->remote_frees - a->remote_frees));
}

static void test_stats_cross_thread_frees(void **state) {
  check_cross_thread_frees(48, 1);
  check_cross_thread_frees(48, 0);
  check_cross_thread_frees(2000, 1);
  check_cross_thread_frees(2000, 0);
}

/* ---- invalid free ---------------------------------------------------------- */

/* free() of a pointer hakmem did not hand out aborts (default
 * HAKMEM_ON_ERROR); run in a child so the abort is observable. */
static void expect_abort_in_child(void (*bad)(void), const char *what) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    /* cmocka catches these to fail a test; the child must die of them. */
    static const int sigs[] = {SIGABRT, SIGSEGV, SIGBUS, SIGILL, SIGFPE};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) signal(sigs[i], SIG_DFL);
    alarm(20);
    bad();
    _exit(0);  /* reached only if the bad free went unnoticed */
  }
  int st;
  assert_int_equal(waitpid(pid, &st, 0), pid);
  if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
    fail_msg("%s: child %s %d, want SIGABRT", what, WIFSIGNALED(st) ? "killed by signal" : "exited with",
             WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

static void free_stack_pointer(void) {
  volatile long local[4] = {1, 2, 3, 4};
  hak_free((void *)&local[0]);
}

static void free_interior_tiny(void) {
  char *p = hak_malloc(64);
  hak_free(p + 16);
}

static void free_interior_large(void) {
  char *p = hak_malloc(4 * MiB);
  hak_free(p + 8192);
}

static void test_invalid_free_aborts(void **state) {
  const char *mode = getenv("HAKMEM_ON_ERROR");
  if (mode && *mode) skip();  /* the environment chose another policy */
  expect_abort_in_child(free_stack_pointer, "free(stack address)");
  expect_abort_in_child(free_interior_tiny, "free(tiny block + 16)");
  expect_abort_in_child(free_interior_large, "free(large block + 8192)");
}

int main(void) {
  /* A glob on test names, e.g. CMOCKA_TEST_FILTER='test_calloc*'. */
  const char *only = getenv("CMOCKA_TEST_FILTER");
  if (only && *only) cmocka_set_test_filter(only);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_malloc_zero),
      cmocka_unit_test(test_free_null_keeps_errno),
      cmocka_unit_test(test_basic_alignment),
      cmocka_unit_test(test_usable_size),
      cmocka_unit_test(test_every_small_size),
      cmocka_unit_test(test_sampled_sizes),
      cmocka_unit_test(test_calloc_zeroes),
      cmocka_unit_test(test_calloc_overflow),
      cmocka_unit_test(test_realloc_null_and_zero),
      cmocka_unit_test(test_realloc_contents),
      cmocka_unit_test(test_realloc_failure_keeps_block),
      cmocka_unit_test(test_reallocarray),
      cmocka_unit_test(test_posix_memalign_einval),
      cmocka_unit_test(test_posix_memalign_ok),
      cmocka_unit_test(test_aligned_alloc_memalign),
      cmocka_unit_test(test_valloc_pvalloc),
      cmocka_unit_test(test_reuse_before_carving),
      cmocka_unit_test(test_bypass_arena),
      cmocka_unit_test(test_huge_sizes),
      cmocka_unit_test(test_stats_layout),
      cmocka_unit_test(test_stats_class_counters),
      cmocka_unit_test(test_stats_large),
      cmocka_unit_test(test_stats_every_entry_point),
      cmocka_unit_test(test_stats_cross_thread_frees),
      cmocka_unit_test(test_invalid_free_aborts),
  };
  return cmocka_run_group_tests_name("malloc_api", tests, NULL, NULL);
}
