/* test_trace_format.c — the trace format through the writer and the reader:
 * a round trip of every kind and field, cuts at every frame boundary and at
 * random bytes, random corruption, a wrong version, foreign files, version
 * 1 traces read and rewritten as version 2, the version 2 models at their
 * edges, append, and the zstd command line accepting what we write. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "hakmem/trace.h"
#include "../trace/hkt_internal.h"   /* hkt_live, the rank structure of version 2 */
#include "testutil.h"

static char tmpdir[64];
static char path[128];

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

/* A value that exercises the encodings: zero, small, large, odd, extreme. */
static uint64_t rvalue(void) {
  switch (rnd() % 6) {
  case 0: return 0;
  case 1: return rnd() % 200;
  case 2: return 0x7f0000000000ull + (rnd() % 100000) * 16;
  case 3: return rnd();
  case 4: return UINT64_MAX - rnd() % 3;
  default: return 0x7f0000000000ull + rnd() % 100000;
  }
}

#define NEV 5000
static hkt_event evs[NEV];
static char strs[NEV][80];
static uint8_t bids[NEV][20];
static const uint64_t stack1[] = { 0x401000, 0x401234, 0x7f00000012ff };
static const uint64_t stack2[] = { 0xffffffffffffff00ull };

static hkt_module mods[2] = {
  { "/usr/bin/prog", 0x400000, 0x10000, { 1, 2, 3, 4 }, 4 },
  { "/lib/x86_64-linux-gnu/libc.so.6", 0x7f0000000000ull, 0x200000, { 0 }, 20 },
};
static hkt_header hdr = {
  .version = HKT_FORMAT_VERSION, .pid = 1234, .ppid = 1, .start_realtime_ns = 1700000000123456789ull,
  .clock = "monotonic", .cmdline = "prog --flag arg", .config = "HAKMEM_DEBUG=1\nHAKMEM_TRACE=x\n",
  .arena_base = 0x200000000000ull, .num_classes = 3, .class_size = { 8, 16, 32 },
  .num_modules = 2, .modules = mods,
};

static void make_events(void) {
  uint64_t t = 1000;
  for (int i = 0; i < NEV; i++) {
    hkt_event *e = &evs[i];
    memset(e, 0, sizeof *e);
    e->kind = (uint16_t)(1 + rnd() % (HKT_EV__COUNT - 1));
    e->tid = (uint32_t)(rnd() % 5 == 0 ? rnd() : rnd() % 4);
    t += rnd() % 3 == 0 ? rnd() % 100000 : 0;
    e->time_ns = rnd() % 50 == 0 ? t - rnd() % 500 : t;  /* sometimes out of order */
    e->fn = (uint16_t)(rnd() % 3 ? 0 : rnd());
    e->cls = rnd() % 4 == 0 ? HKT_NO_CLASS : (uint32_t)(rnd() % 4 == 0 ? rnd() : rnd() % 30);
    e->ptr = rvalue();
    e->size = rvalue();
    e->aux = rvalue();
    e->aux2 = rvalue();
    e->aux3 = rnd() % 4 ? 0 : rvalue();
    e->caller = rnd() % 3 == 0 ? 0 : 0x401000 + (rnd() % 40) * 0x10;
    e->stack_id = (uint32_t)(rnd() % 3 == 0 ? 1 + rnd() % 2 : 0);
    if (rnd() % 20 == 0) {
      snprintf(strs[i], sizeof strs[i], "label %d %llx", i, (unsigned long long)rnd());
      e->str = strs[i];
    } else if (rnd() % 40 == 0) {
      e->str = "";   /* empty but present */
    }
    if (rnd() % 30 == 0) {
      for (int k = 0; k < 20; k++) bids[i][k] = (uint8_t)rnd();
      e->bid = bids[i];
      e->bid_len = 1 + (uint32_t)(rnd() % 20);
    }
  }
}

/* Write evs[0..n) in frames of `frame` events; complete or not. */
static void write_trace(const char *p, int n, uint32_t frame, int complete) {
  hkt_writer *w = NULL;
  assert_int_equal(hkt_writer_open(&w, p, &hdr), 0);
  assert_int_equal(hkt_writer_set_frame_events(w, frame), 0);
  assert_int_equal(hkt_writer_stack(w, 1, stack1, 3), 0);
  assert_int_equal(hkt_writer_stack(w, 2, stack2, 1), 0);
  for (int i = 0; i < n; i++) assert_int_equal(hkt_writer_put(w, &evs[i]), 0);
  assert_int_equal(hkt_writer_events(w), (uint64_t)n);
  assert_int_equal(hkt_writer_close(w, complete), 0);
}

/* Write e[0..n) to `path` with header h, in frames of `frame` events,
 * complete, and open a reader on it. */
static hkt_reader *write_and_open(const hkt_header *h, uint32_t frame, const hkt_event *e, int n) {
  hkt_writer *w;
  assert_int_equal(hkt_writer_open(&w, path, h), 0);
  assert_int_equal(hkt_writer_set_frame_events(w, frame), 0);
  for (int i = 0; i < n; i++) assert_int_equal(hkt_writer_put(w, &e[i]), 0);
  assert_int_equal(hkt_writer_close(w, 1), 0);
  hkt_reader *r;
  assert_int_equal(hkt_reader_open(&r, path), 0);
  return r;
}

/* Read r to its end, checking the fields of calls against want[]: how
 * many events it held. */
static int read_back_calls(hkt_reader *r, const hkt_event *want, int n) {
  hkt_event ev;
  int k = 0;
  while (hkt_reader_next(r, &ev) > 0) {
    assert_true(k < n);
    assert_int_equal(ev.kind, want[k].kind);
    assert_int_equal(ev.ptr, want[k].ptr);
    assert_int_equal(ev.cls, want[k].cls);
    assert_int_equal(ev.size, want[k].size);
    assert_int_equal(ev.tid, want[k].tid);
    assert_int_equal(ev.caller, want[k].caller);
    k++;
  }
  return k;
}

static void check_event(const hkt_event *got, int i) {
  const hkt_event *e = &evs[i];
  assert_int_equal(got->seq, (uint64_t)i);
  assert_int_equal(got->kind, e->kind);
  assert_int_equal(got->tid, e->tid);
  assert_int_equal(got->time_ns, e->time_ns);
  assert_int_equal(got->fn, e->fn);
  assert_int_equal(got->cls, e->cls);
  assert_int_equal(got->ptr, e->ptr);
  assert_int_equal(got->size, e->size);
  assert_int_equal(got->aux, e->aux);
  assert_int_equal(got->aux2, e->aux2);
  assert_int_equal(got->aux3, e->aux3);
  assert_int_equal(got->caller, e->caller);
  assert_int_equal(got->stack_id, e->stack_id);
  if (e->str) { assert_non_null(got->str); assert_string_equal(got->str, e->str); }
  else assert_null(got->str);
  assert_int_equal(got->bid_len, e->bid ? e->bid_len : 0);
  if (e->bid) assert_memory_equal(got->bid, e->bid, e->bid_len);
}

/* Read a file; return events read, the final code in *rc. Checks each event
 * it gets against evs. */
static int read_all(const char *p, int *rc, int *complete) {
  hkt_reader *r = NULL;
  int e = hkt_reader_open(&r, p);
  if (HKT_IS_ERR(e)) {
    assert_true(strlen(hkt_reader_errmsg(r ? r : NULL)) > 0);
    hkt_reader_close(r);
    *rc = e;
    *complete = 0;
    return 0;
  }
  hkt_event ev;
  int n = 0;
  while ((e = hkt_reader_next(r, &ev)) > 0) {
    assert_true(n < NEV);
    check_event(&ev, n);
    n++;
  }
  if (HKT_IS_ERR(e)) {
    const char *m = hkt_reader_errmsg(r);
    assert_non_null(strstr(m, p));      /* names the file */
    assert_non_null(strstr(m, "offset"));
    assert_int_equal(hkt_reader_next(r, &ev), e);   /* sticky */
  }
  *rc = e;
  *complete = hkt_reader_complete(r);
  hkt_reader_close(r);
  return n;
}

static int setup(void **state) {
  (void)state;
  strcpy(tmpdir, "/tmp/hkt-format-XXXXXX");
  if (!mkdtemp(tmpdir)) return -1;
  snprintf(path, sizeof path, "%s/t.hkt.zst", tmpdir);
  make_events();
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void test_names(void **state) {
  (void)state;
  for (unsigned k = 1; k < HKT_EV__COUNT; k++) {
    const char *n = hkt_kind_name(k);
    assert_string_not_equal(n, "unknown");
    assert_int_equal(hkt_kind_from_name(n), (int)k);
  }
  assert_string_equal(hkt_kind_name(HKT_EV_MALLOC), "malloc");
  assert_string_equal(hkt_kind_name(HKT_EV_SS_UNREGISTER), "ss_unregister");
  assert_string_equal(hkt_kind_name(999), "unknown");
  assert_int_equal(hkt_kind_from_name("nope"), -1);
  assert_string_equal(hkt_detect_name(HKT_DET_DOUBLE_FREE), "double_free");
  assert_string_equal(hkt_detect_name(HKT_DET__COUNT), "unknown");
  assert_string_equal(hkt_fn_name(HKT_FN_POSIX_MEMALIGN), "posix_memalign");
  assert_string_equal(hkt_end_name(HKT_END_SIGNAL), "signal");
  for (int e = 0; e >= HKT_ERR_ZSTD; e--) assert_true(strlen(hkt_strerror(e)) > 0);
}

static void test_round_trip(void **state) {
  (void)state;
  write_trace(path, NEV, 333, 1);
  hkt_reader *r = NULL;
  assert_int_equal(hkt_reader_open(&r, path), 0);
  const hkt_header *h = hkt_reader_header(r);
  assert_int_equal(h->version, HKT_FORMAT_VERSION);
  assert_int_equal(h->pid, 1234);
  assert_int_equal(h->ppid, 1);
  assert_int_equal(h->start_realtime_ns, hdr.start_realtime_ns);
  assert_string_equal(h->clock, "monotonic");
  assert_string_equal(h->cmdline, hdr.cmdline);
  assert_string_equal(h->config, hdr.config);
  assert_int_equal(h->arena_base, hdr.arena_base);
  assert_int_equal(h->num_classes, 3);
  assert_int_equal(h->class_size[2], 32);
  assert_int_equal(h->num_modules, 2);
  assert_string_equal(h->modules[1].path, mods[1].path);
  assert_int_equal(h->modules[1].base, mods[1].base);
  assert_int_equal(h->modules[0].size, mods[0].size);
  assert_int_equal(h->modules[0].build_id_len, 4);
  assert_memory_equal(h->modules[0].build_id, mods[0].build_id, 4);
  hkt_event ev;
  int n = 0, e;
  while ((e = hkt_reader_next(r, &ev)) > 0) check_event(&ev, n++);
  assert_int_equal(e, 0);
  assert_int_equal(n, NEV);
  assert_true(hkt_reader_complete(r));
  const uint64_t *fr;
  uint32_t nf;
  assert_int_equal(hkt_reader_stack(r, 1, &fr, &nf), 0);
  assert_int_equal(nf, 3);
  assert_memory_equal(fr, stack1, sizeof stack1);
  assert_int_equal(hkt_reader_stack(r, 2, &fr, &nf), 0);
  assert_int_equal(fr[0], stack2[0]);
  assert_true(HKT_IS_ERR(hkt_reader_stack(r, 3, &fr, &nf)));
  struct stat st;
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(hkt_reader_offset(r), (uint64_t)st.st_size);
  assert_int_equal(hkt_reader_frames(r), 1 + (NEV + 332) / 333 + 1);
  hkt_reader_close(r);
}

/* A heap-like sequence: blocks freed and handed out again last in first
 * out, frees of blocks from this frame and from earlier ones, odd and zero
 * pointers: the pointer predictors must give back every value. */
/* Two files with the same bytes. */
static int same_bytes(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb;
  while (same) {
    int ca = fgetc(fa), cb = fgetc(fb);
    if (ca != cb) same = 0;
    if (ca == EOF) break;
  }
  if (fa) fclose(fa);
  if (fb) fclose(fb);
  return same;
}

static void test_round_trip_heap(void **state) {
  (void)state;
  enum { N = 20000, LIVE = 300 };
  static hkt_event hev[N];
  uint64_t live[LIVE] = {0}, freed[8][32];
  int nfreed[8] = {0};
  uint64_t next = 0x100000000000ull;
  for (int i = 0; i < N; i++) {
    hkt_event *e = &hev[i];
    memset(e, 0, sizeof *e);
    e->time_ns = (uint64_t)i * 40;
    e->tid = (uint32_t)(rnd() % 3);
    int k = (int)(rnd() % LIVE);
    uint32_t cls = (uint32_t)(rnd() % 8);
    if (live[k] && rnd() % 2) {
      e->kind = HKT_EV_FREE;
      e->ptr = live[k];
      e->cls = (uint32_t)((live[k] >> 4) % 8);
      e->caller = 0x402000 + (rnd() % 3) * 8;   /* with a caller: the writer's fast path for frees */
      if (nfreed[e->cls] < 32) freed[e->cls][nfreed[e->cls]++] = live[k];
      live[k] = 0;
    } else {
      e->kind = (uint16_t)(rnd() % 3 ? HKT_EV_MALLOC : rnd() % 2 ? HKT_EV_REALLOC : HKT_EV_ALIGNED);
      e->size = 1 + rnd() % 1024;
      if (nfreed[cls] && rnd() % 4) e->ptr = freed[cls][--nfreed[cls]];   /* LIFO reuse */
      else {
        do next += 16; while ((next >> 4) % 8 != cls);
        e->ptr = rnd() % 50 ? next : next + 3;   /* now and then not a multiple of 8 */
      }
      if (rnd() % 100 == 0) e->ptr = 0;   /* a failed allocation */
      e->cls = e->ptr ? (uint32_t)((e->ptr >> 4) % 8) : HKT_NO_CLASS;
      if (rnd() % 7 == 0) e->cls = HKT_NO_CLASS;
      e->caller = 0x401000 + (rnd() % 5) * 8;
      if (e->ptr && !live[k]) live[k] = e->ptr;
    }
    if (rnd() % 50 == 0) { e->kind = HKT_EV_FREE; e->ptr = rvalue(); e->cls = HKT_NO_CLASS; }  /* a wild free */
  }
  hkt_header h = hdr;
  h.num_classes = 8;
  for (int c = 0; c < 8; c++) h.class_size[c] = 16u << c;
  /* The writer's and reader's portable paths (HAKMEM_TRACE_ISA=base)
   * against their fast ones: the same bytes, the same events. */
  char fast[sizeof path + 8];
  snprintf(fast, sizeof fast, "%s.fast", path);
  hkt_reader *r = write_and_open(&h, 4096, hev, N);
  hkt_reader_close(r);
  assert_int_equal(rename(path, fast), 0);
  setenv("HAKMEM_TRACE_ISA", "base", 1);
  r = write_and_open(&h, 4096, hev, N);
  unsetenv("HAKMEM_TRACE_ISA");
  assert_true(same_bytes(path, fast));
  unlink(fast);
  for (int base_isa = 1; base_isa >= 0; base_isa--) {
    if (!base_isa) {
      hkt_reader_close(r);
      assert_int_equal(hkt_reader_open(&r, path), 0);
    }
    assert_int_equal(read_back_calls(r, hev, N), N);
    assert_true(hkt_reader_complete(r));
  }
  hkt_reader_close(r);
}

/* Class prediction near and past the writer's size table (4096 bytes):
 * a class the writer predicts differently from the reader comes back
 * wrong. Classes straddle the table's end; each size gets its smallest
 * fitting class, or now and then another one. */
static void test_class_edges(void **state) {
  (void)state;
  static const uint32_t csz[] = { 16, 100, 4000, 4096, 5000, 65536 };
  static const uint64_t sizes[] = { 0, 1, 16, 17, 99, 100, 101, 3999, 4000, 4001, 4095, 4096,
                                    4097, 4999, 5000, 5001, 65535, 65536, 65537, 1ull << 40 };
  enum { NC = sizeof csz / sizeof *csz, NS = sizeof sizes / sizeof *sizes, N = 3000 };
  static hkt_event cev[N];
  hkt_header h = hdr;
  h.num_classes = NC;
  memcpy(h.class_size, csz, sizeof csz);
  for (int i = 0; i < N; i++) {
    hkt_event *e = &cev[i];
    memset(e, 0, sizeof *e);
    e->kind = (uint16_t)(i % 3 == 0 ? HKT_EV_MALLOC : i % 3 == 1 ? HKT_EV_REALLOC : HKT_EV_ALIGNED);
    e->size = sizes[rnd() % NS];
    e->ptr = 0x100000000000ull + (uint64_t)i * 64;
    uint32_t c = 0;
    while (c < NC && csz[c] < e->size) c++;
    e->cls = c < NC ? c : HKT_NO_CLASS;
    if (rnd() % 5 == 0) e->cls = (uint32_t)(rnd() % NC);
  }
  hkt_reader *r = write_and_open(&h, 1000, cev, N);
  hkt_event ev;
  int n = 0;
  while (hkt_reader_next(r, &ev) > 0) {
    assert_int_equal(ev.size, cev[n].size);
    assert_int_equal(ev.cls, cev[n].cls);
    n++;
  }
  assert_int_equal(n, N);
  assert_true(hkt_reader_complete(r));
  hkt_reader_close(r);
}

/* Classes past a byte (the writer keeps a live block's class in its
 * pointer table when it fits, else in a side array), none, and the ones
 * next to the bounds, through MALLOC and FREE by three threads; and the
 * writer's prefetch hint changes no byte of the output. */
static void wide_events(hkt_event *ev, int n) {
  static const uint32_t cls[] = { 0, 1, 2, 300, 0x10000, HKT_NO_CLASS, 254, 255, 70, 0xfffe };
  int k = 0;
  for (unsigned round = 0; k < n; round++)
    for (unsigned i = 0; i < 10 && k < n; i++) {
      uint64_t p = 0x100000 + (uint64_t)(round % 50) * 0x1000 + i * 64;
      ev[k++] = (hkt_event){ .kind = HKT_EV_MALLOC, .cls = cls[i], .ptr = p, .size = 24 + i,
                             .caller = 0x400000 + i, .time_ns = 100u * k, .tid = i % 3 };
      if (round % 7 && k < n)
        ev[k++] = (hkt_event){ .kind = HKT_EV_FREE, .cls = cls[(i + round) % 10], .ptr = p, .caller = 0x500000,
                               .time_ns = 100u * k, .tid = (i + 1) % 3 };
    }
}

static void test_wide_classes(void **state) {
  (void)state;
  enum { N = 40000 };
  static hkt_event ev[N];
  wide_events(ev, N);
  hkt_header h = hdr;
  h.num_classes = 3;
  h.class_size[0] = 16, h.class_size[1] = 32, h.class_size[2] = 64;
  hkt_reader *r = write_and_open(&h, 1000, ev, N);
  assert_int_equal(read_back_calls(r, ev, N), N);
  hkt_reader_close(r);

  /* the same events with hints (some for pointers that never come) */
  char hinted[128];
  snprintf(hinted, sizeof hinted, "%s/hinted.hkt.zst", tmpdir);
  hkt_writer *w;
  assert_int_equal(hkt_writer_open(&w, hinted, &h), 0);
  assert_int_equal(hkt_writer_set_frame_events(w, 1000), 0);
  hkt_writer_prefetch(NULL, 1);
  for (int i = 0; i < N; i++) {
    if (i + 8 < N) hkt_writer_prefetch(w, ev[i + 8].ptr);
    hkt_writer_prefetch(w, 0xdead0000u + (uint64_t)i);
    assert_int_equal(hkt_writer_put(w, &ev[i]), 0);
  }
  assert_int_equal(hkt_writer_close(w, 1), 0);
  size_t la, lb;
  char *a = read_whole_file(path, &la), *b = read_whole_file(hinted, &lb);
  assert_non_null(a);
  assert_non_null(b);
  assert_int_equal(la, lb);
  assert_memory_equal(a, b, la);
  free(a);
  free(b);
}

static void test_time_shift(void **state) {
  (void)state;
  hkt_header h2 = hdr;
  h2.time_shift = 6;
  hkt_writer *w;
  assert_int_equal(hkt_writer_open(&w, path, &h2), 0);
  hkt_event e = { .kind = HKT_EV_MALLOC, .time_ns = 1000, .ptr = 0x1000, .size = 8, .cls = 0 };
  assert_int_equal(hkt_writer_put(w, &e), 0);
  assert_int_equal(hkt_writer_close(w, 1), 0);
  hkt_reader *r;
  assert_int_equal(hkt_reader_open(&r, path), 0);
  assert_int_equal(hkt_reader_header(r)->time_shift, 6);
  assert_int_equal(hkt_reader_next(r, &e), 1);
  assert_int_equal(e.time_ns, 1000 & ~63u);
  hkt_reader_close(r);
}

/* zstd's own tool accepts the file and its frames. */
static void test_zstd_cli(void **state) {
  (void)state;
  write_trace(path, NEV, 1000, 1);
  char cmd[512];
  snprintf(cmd, sizeof cmd, "zstd -q -t %s && zstd -q -dc %s | head -c 4 | grep -q HKTH", path, path);
  if (system("command -v zstd >/dev/null") != 0) skip();
  assert_int_equal(system(cmd), 0);
}

static size_t file_load(const char *p, uint8_t **buf) {
  FILE *f = fopen(p, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  *buf = malloc((size_t)n + 1);
  assert_int_equal(fread(*buf, 1, (size_t)n, f), (size_t)n);
  fclose(f);
  return (size_t)n;
}

static void file_store(const char *p, const void *b, size_t n) {
  FILE *f = fopen(p, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(b, 1, n, f), n);
  fclose(f);
}

/* Cut the file at every frame boundary and at random bytes: the reader
 * returns exactly the events of the whole frames before the cut. */
static void test_truncation(void **state) {
  (void)state;
  const uint32_t per = 250;
  write_trace(path, NEV, per, 1);
  uint8_t *buf;
  size_t len = file_load(path, &buf);
  size_t bounds[64];
  int nb = 0;
  for (size_t off = 0; off < len;) {
    size_t fs = ZSTD_findFrameCompressedSize(buf + off, len - off);
    assert_false(ZSTD_isError(fs));
    off += fs;
    bounds[nb++] = off;
  }
  int nframes_ev = (NEV + per - 1) / per;
  assert_int_equal(nb, 1 + nframes_ev + 1);
  char cut[160];
  snprintf(cut, sizeof cut, "%s/cut.hkt.zst", tmpdir);
  for (int b = 0; b < nb; b++) {
    file_store(cut, buf, bounds[b]);
    int rc, complete;
    int n = read_all(cut, &rc, &complete);
    int want = b == 0 ? 0 : (b - 1 < nframes_ev ? (int)((b) * per) : NEV);
    if (want > NEV) want = NEV;
    assert_int_equal(rc, 0);
    assert_int_equal(n, want);
    assert_int_equal(complete, b == nb - 1);
  }
  for (int i = 0; i < 300; i++) {
    size_t at = (size_t)(rnd() % len);
    file_store(cut, buf, at);
    int rc, complete;
    int n = read_all(cut, &rc, &complete);
    int whole = 0;   /* frames entirely before the cut */
    while (whole < nb && bounds[whole] <= at) whole++;
    int at_boundary = at == 0 || (whole > 0 && bounds[whole - 1] == at);
    if (whole == 0) {
      assert_true(rc == HKT_ERR_TRUNCATED || rc == HKT_ERR_NOT_TRACE);
      continue;
    }
    int want = whole - 1 < nframes_ev ? (whole - 1) * (int)per : NEV;
    assert_int_equal(n, want);
    assert_int_equal(rc, at_boundary ? 0 : HKT_ERR_TRUNCATED);
    assert_false(complete);
  }
  free(buf);
}

/* The trace at `path` in *buf (its length returned), and in bad the name
 * of a scratch file for damaged copies of it. */
static size_t load_for_damage(uint8_t **buf, char *bad, size_t n, const char *name) {
  snprintf(bad, n, "%s/%s.hkt.zst", tmpdir, name);
  return file_load(path, buf);
}

/* A copy of buf[0, len) with `flips` random bytes changed (malloc'd). */
static uint8_t *flipped(const uint8_t *buf, size_t len, int flips) {
  uint8_t *copy = malloc(len);
  assert_non_null(copy);
  memcpy(copy, buf, len);
  for (int k = 0; k < flips; k++) copy[rnd() % len] ^= (uint8_t)(1 + rnd() % 255);
  return copy;
}

/* Flip random bytes: an error (never a crash), and every event delivered
 * before it is one that was written. */
static void test_corruption(void **state) {
  (void)state;
  write_trace(path, NEV, 500, 1);
  uint8_t *buf;
  char bad[160];
  size_t len = load_for_damage(&buf, bad, sizeof bad, "bad");
  int errors = 0;
  for (int i = 0; i < 300; i++) {
    uint8_t *copy = flipped(buf, len, 1 + (int)(rnd() % 3));
    file_store(bad, copy, len);
    int rc, complete;
    int n = read_all(bad, &rc, &complete);   /* checks the events it got */
    if (HKT_IS_ERR(rc)) errors++;
    else assert_int_equal(n, NEV);   /* a flip zstd could not see cannot change events */
    free(copy);
  }
  assert_true(errors > 250);
  free(buf);
}

/* hkt_reader_batch_into: the same events as hkt_reader_next, in chunks of
 * any size, mixed with next and batch, up to the same error; with
 * hkt_reader_skip, the same but for time_ns and caller, on both ISA paths
 * (a heap-like trace, so that the fast paths decode it). */
static void read_into(const char *p, unsigned max, int mix, int *rc, int *n) {
  hkt_reader *r;
  assert_int_equal(hkt_reader_open(&r, p), 0);
  static hkt_event got[512 + 1];   /* room for max (<= 512) events and a canary */
  int k = 0, e, turn = 0;
  for (;;) {
    if (mix && turn++ % 3 == 1) {
      const hkt_event *b;
      if ((e = hkt_reader_batch(r, &b)) <= 0) break;
      for (int i = 0; i < e; i++) check_event(&b[i], k++);
      continue;
    }
    if (mix && turn % 5 == 0) {
      if ((e = hkt_reader_next(r, &got[0])) <= 0) break;
      check_event(&got[0], k++);
      continue;
    }
    got[max].seq = 12345;   /* a canary past max */
    if ((e = hkt_reader_batch_into(r, got, max)) <= 0) break;
    assert_true((unsigned)e <= max && e <= (int)HKT_BATCH);
    assert_int_equal(got[max].seq, 12345);
    for (int i = 0; i < e; i++) check_event(&got[i], k++);
  }
  if (HKT_IS_ERR(e)) assert_int_equal(hkt_reader_batch_into(r, got, max), e);   /* sticky */
  *rc = e;
  *n = k;
  hkt_reader_close(r);
}

/* A heap-like trace of n MALLOCs and FREEs of two threads (what the
 * version 2 fast paths decode) in e[], written to `path` in frames of
 * `frame` events; a reader open on it. */
static hkt_reader *heap_trace(hkt_event *hev, int n, uint32_t frame) {
  uint64_t live[64] = {0};
  for (int i = 0; i < n; i++) {
    hkt_event *e = &hev[i];
    memset(e, 0, sizeof *e);
    e->time_ns = (uint64_t)i * 37 + rnd() % 20;
    e->tid = (uint32_t)(rnd() % 2);
    e->caller = 0x401000 + (rnd() % 4) * 8;
    int k = (int)(rnd() % 64);
    if (live[k]) {
      e->kind = HKT_EV_FREE;
      e->ptr = live[k];
      e->cls = (uint32_t)((live[k] >> 4) % 4);
      live[k] = 0;
    } else {
      e->kind = HKT_EV_MALLOC;
      e->size = 1 + rnd() % 128;
      e->cls = e->size <= 16 ? 0 : e->size <= 32 ? 1 : e->size <= 64 ? 2 : 3;
      e->ptr = live[k] = 0x100000000000ull + (uint64_t)i * 64 + e->cls * 16;
    }
  }
  hkt_header h = hdr;
  h.num_classes = 4;
  for (int c = 0; c < 4; c++) h.class_size[c] = 16u << c;
  return write_and_open(&h, frame, hev, n);
}

static void test_batch_into(void **state) {
  (void)state;
  write_trace(path, NEV, 250, 1);
  hkt_reader *r;
  hkt_event ev;
  assert_int_equal(hkt_reader_open(&r, path), 0);
  assert_int_equal(hkt_reader_batch_into(r, &ev, 0), HKT_ERR_ARG);
  assert_int_equal(hkt_reader_batch_into(r, NULL, 1), HKT_ERR_ARG);
  assert_int_equal(hkt_reader_skip(r, 0x80), HKT_ERR_ARG);
  assert_int_equal(hkt_reader_next(r, &ev), 1);
  assert_int_equal(hkt_reader_skip(r, HKT_SKIP_TIME), HKT_ERR_ARG);   /* only before the first event */
  hkt_reader_close(r);
  static const unsigned maxes[] = { 1, 7, 100, HKT_BATCH, HKT_BATCH + 8 };
  for (unsigned m = 0; m < sizeof maxes / sizeof *maxes; m++)
    for (int mix = 0; mix < 2; mix++) {
      int rc, n;
      read_into(path, maxes[m], mix, &rc, &n);
      assert_int_equal(rc, 0);
      assert_int_equal(n, NEV);
    }
  /* cut and corrupt: the events before the error, and the error, as next gives them */
  uint8_t *buf;
  char bad[160];
  size_t len = load_for_damage(&buf, bad, sizeof bad, "into");
  int errs = 0;
  for (int i = 0; i < 60; i++) {
    uint8_t *copy = flipped(buf, len, i % 2);
    size_t cut = i % 2 ? len : (size_t)(rnd() % len);
    file_store(bad, copy, cut);
    free(copy);
    int rc, complete, rc2, n2;
    int n = read_all(bad, &rc, &complete);
    if (hkt_reader_open(&r, bad)) { hkt_reader_close(r); continue; }   /* the header itself is bad */
    hkt_reader_close(r);
    read_into(bad, 1 + (unsigned)(rnd() % 300), i % 3 == 0, &rc2, &n2);
    assert_int_equal(rc2, rc);
    assert_int_equal(n2, n);
    errs += HKT_IS_ERR(rc);
  }
  assert_true(errs > 20);
  free(buf);

  /* skip: a heap-like trace through the fast paths */
  enum { N = 30000 };
  static hkt_event hev[N];
  hkt_reader_close(heap_trace(hev, N, 8192));
  for (int base_isa = 0; base_isa < 2; base_isa++) {
    if (base_isa) setenv("HAKMEM_TRACE_ISA", "base", 1);
    assert_int_equal(hkt_reader_open(&r, path), 0);
    unsetenv("HAKMEM_TRACE_ISA");
    assert_int_equal(hkt_reader_skip(r, HKT_SKIP_TIME | HKT_SKIP_CALLER), 0);
    static hkt_event got[64];
    int k = 0, e, times = 0;
    while ((e = hkt_reader_batch_into(r, got, 64)) > 0)
      for (int i = 0; i < e; i++, k++) {
        assert_true(k < N);
        assert_int_equal(got[i].seq, (uint64_t)k);
        assert_int_equal(got[i].kind, hev[k].kind);
        assert_int_equal(got[i].tid, hev[k].tid);
        assert_int_equal(got[i].ptr, hev[k].ptr);
        assert_int_equal(got[i].size, hev[k].size);
        assert_int_equal(got[i].cls, hev[k].cls);
        times += got[i].time_ns == hev[k].time_ns;
      }
    assert_int_equal(e, 0);
    assert_int_equal(k, N);
    assert_true(hkt_reader_complete(r));
    assert_true(times < N / 2);   /* the fast paths did skip them */
    hkt_reader_close(r);
  }
}


/* Stream ends on the fast paths: the reader drops the end tests of the
 * dense streams for a chunk that has room in them for any of its events,
 * so an event that runs past one of them near the end of a frame must
 * still be refused there, with the same error however the events are
 * read (one at a time, in chunks, lean, on both ISA paths). The first
 * event frame is rewritten with one byte less in stream s (the last
 * one, so that the stream's last reader runs out). */
static size_t uvar(const uint8_t *p, size_t *at, uint64_t *v) {
  uint64_t x = 0;
  for (unsigned sh = 0;; sh += 7) {
    uint8_t b = p[(*at)++];
    x |= (uint64_t)(b & 0x7f) << sh;
    if (!(b & 0x80)) break;
  }
  *v = x;
  return *at;
}
static void put_uvar(uint8_t *p, size_t *at, uint64_t v) {
  while (v >= 0x80) { p[(*at)++] = (uint8_t)(v | 0x80); v >>= 7; }
  p[(*at)++] = (uint8_t)v;
}
static uint8_t *zframe(const uint8_t *c, size_t n, size_t *len) {
  size_t cap = ZSTD_compressBound(n);
  uint8_t *out = malloc(cap);
  assert_non_null(out);
  ZSTD_CCtx *z = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
  *len = ZSTD_compress2(z, out, cap, c, n);
  assert_false(ZSTD_isError(*len));
  ZSTD_freeCCtx(z);
  return out;
}
/* Read p to its end or error: events (checked against want), the error. */
static int read_ends(const char *p, const hkt_event *want, int mode, int base_isa, int *rc, char *msg, size_t msgn) {
  hkt_reader *r;
  if (base_isa) setenv("HAKMEM_TRACE_ISA", "base", 1);
  assert_int_equal(hkt_reader_open(&r, p), 0);
  unsetenv("HAKMEM_TRACE_ISA");
  if (mode == 2) assert_int_equal(hkt_reader_skip(r, HKT_SKIP_TIME | HKT_SKIP_CALLER), 0);
  static hkt_event got[64];
  int k = 0, e;
  for (;;) {
    if (mode == 0) e = hkt_reader_next(r, &got[0]);
    else e = hkt_reader_batch_into(r, got, mode == 1 ? 7 : 64);
    if (e <= 0) break;
    for (int i = 0; i < e; i++, k++) {
      assert_int_equal(got[i].seq, (uint64_t)k);
      assert_int_equal(got[i].kind, want[k].kind);
      assert_int_equal(got[i].ptr, want[k].ptr);
      assert_int_equal(got[i].size, want[k].size);
      assert_int_equal(got[i].cls, want[k].cls);
      if (mode != 2) assert_int_equal(got[i].time_ns, want[k].time_ns);
    }
  }
  *rc = e;
  snprintf(msg, msgn, "%s", hkt_reader_errmsg(r));
  hkt_reader_close(r);
  return k;
}
static void test_stream_ends(void **state) {
  (void)state;
  enum { N = 6000, FRAME = 4096 };
  static hkt_event hev[N];
  hkt_reader_close(heap_trace(hev, N, FRAME));
  uint8_t *file;
  size_t flen = file_load(path, &file);
  size_t h_z = ZSTD_findFrameCompressedSize(file, flen);
  size_t e_z = ZSTD_findFrameCompressedSize(file + h_z, flen - h_z);
  assert_false(ZSTD_isError(h_z) || ZSTD_isError(e_z));
  unsigned long long e_n = ZSTD_getFrameContentSize(file + h_z, e_z);
  assert_true(e_n > 0 && e_n < (64u << 20));
  uint8_t *ev = malloc(e_n), *mod = malloc(e_n + 64);
  assert_non_null(ev);
  assert_non_null(mod);
  assert_int_equal(ZSTD_decompress(ev, e_n, file + h_z, e_z), e_n);
  assert_memory_equal(ev, HKT_MAGIC_EVENTS, 4);
  /* the frame's head: first, n, t0, stacks (none), callsites, stream lengths */
  size_t at = 4;
  uint64_t first, n, t0, nst, nc, v, len[HKT_S__COUNT];
  uvar(ev, &at, &first), uvar(ev, &at, &n), uvar(ev, &at, &t0), uvar(ev, &at, &nst);
  assert_int_equal(first, 0);
  assert_int_equal(n, FRAME);
  assert_int_equal(nst, 0);
  uvar(ev, &at, &nc);
  for (uint64_t i = 0; i < nc; i++) uvar(ev, &at, &v);
  size_t head_end = at;
  for (int i = 0; i < HKT_S__COUNT; i++) uvar(ev, &at, &len[i]);
  size_t streams = at;
  static const int dense[] = { HKT_S_TIME, HKT_S_PTR, HKT_S_SIZE, HKT_S_FREE_HI, HKT_S_SIZE_LO, HKT_S_FREE_LO };
  char bad[160], msg[640], msg2[640], want_msg[64];
  snprintf(bad, sizeof bad, "%s/ends.hkt.zst", tmpdir);
  for (unsigned d = 0; d < sizeof dense / sizeof *dense; d++) {
    int s = dense[d];
    assert_true(len[s] > 0);
    size_t m = head_end, off = streams;
    memcpy(mod, ev, head_end);
    for (int i = 0; i < HKT_S__COUNT; i++) put_uvar(mod, &m, len[i] - (i == s));
    for (int i = 0; i < HKT_S__COUNT; i++) {   /* stream i, less its last byte if it is s */
      memcpy(mod + m, ev + off, len[i] - (i == s));
      m += len[i] - (i == s);
      off += len[i];
    }
    size_t z_n;
    uint8_t *z = zframe(mod, m, &z_n);
    uint8_t *out = malloc(h_z + z_n);
    assert_non_null(out);
    memcpy(out, file, h_z);   /* the header frame as written */
    memcpy(out + h_z, z, z_n);
    file_store(bad, out, h_z + z_n);
    free(z);
    free(out);
    snprintf(want_msg, sizeof want_msg, "runs past its stream %d", s);
    int rc, k = read_ends(bad, hev, 0, 0, &rc, msg, sizeof msg);
    assert_int_equal(rc, HKT_ERR_CORRUPT);
    assert_non_null(strstr(msg, want_msg));
    assert_true(k < FRAME);
    if (s == HKT_S_TIME) assert_int_equal(k, FRAME - 1);   /* every event reads a time: the last runs out */
    for (int mode = 0; mode < 3; mode++)
      for (int base_isa = 0; base_isa < 2; base_isa++) {
        int rc2, k2 = read_ends(bad, hev, mode, base_isa, &rc2, msg2, sizeof msg2);
        assert_int_equal(rc2, rc);
        assert_int_equal(k2, k);
        assert_string_equal(msg2, msg);
      }
  }
  free(ev);
  free(mod);
  free(file);
}

/* A hand-made frame with the given content, compressed with a checksum. */
static void write_raw_frames(const char *p, const void *c1, size_t n1, const void *c2, size_t n2) {
  ZSTD_CCtx *z = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
  uint8_t out[4096];
  size_t a = ZSTD_compress2(z, out, sizeof out, c1, n1);
  assert_false(ZSTD_isError(a));
  size_t b = 0;
  if (c2) { b = ZSTD_compress2(z, out + a, sizeof out - a, c2, n2); assert_false(ZSTD_isError(b)); }
  file_store(p, out, a + b);
  ZSTD_freeCCtx(z);
}

static void test_bad_files(void **state) {
  (void)state;
  char p[160];
  int rc, complete;
  snprintf(p, sizeof p, "%s/none.hkt.zst", tmpdir);
  assert_int_equal(read_all(p, &rc, &complete), 0);
  assert_int_equal(rc, HKT_ERR_IO);
  hkt_reader *r = NULL;
  assert_int_equal(hkt_reader_open(&r, p), HKT_ERR_IO);
  assert_non_null(strstr(hkt_reader_errmsg(NULL), p));
  hkt_reader_close(r);

  snprintf(p, sizeof p, "%s/empty", tmpdir);
  file_store(p, "", 0);
  read_all(p, &rc, &complete);
  assert_int_equal(rc, HKT_ERR_NOT_TRACE);

  snprintf(p, sizeof p, "%s/text", tmpdir);
  file_store(p, "hello, this is text\n", 20);
  read_all(p, &rc, &complete);
  assert_int_equal(rc, HKT_ERR_NOT_TRACE);

  snprintf(p, sizeof p, "%s/other.zst", tmpdir);
  write_raw_frames(p, "just some data", 14, NULL, 0);
  read_all(p, &rc, &complete);
  assert_int_equal(rc, HKT_ERR_NOT_TRACE);

  /* a version this build does not know (it reads 1 and 2) */
  uint8_t v3[] = { 'H', 'K', 'T', 'H', 3, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
  write_raw_frames(p, v3, sizeof v3, NULL, 0);
  read_all(p, &rc, &complete);
  assert_int_equal(rc, HKT_ERR_VERSION);
  r = NULL;
  assert_int_equal(hkt_reader_open(&r, p), HKT_ERR_VERSION);
  assert_non_null(strstr(hkt_reader_errmsg(NULL), "version 3"));
  hkt_reader_close(r);

  /* a valid header, then an event frame that starts at the wrong seq */
  uint8_t v1[] = { 'H', 'K', 'T', 'H', 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
  uint8_t evf[] = { 'H', 'K', 'T', 'E', 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0 };
  write_raw_frames(p, v1, sizeof v1, evf, sizeof evf);
  read_all(p, &rc, &complete);
  assert_int_equal(rc, HKT_ERR_SEQUENCE);

  /* an end frame that counts events the trace does not have */
  uint8_t endf[] = { 'H', 'K', 'T', 'Z', 5 };
  write_raw_frames(p, v1, sizeof v1, endf, sizeof endf);
  read_all(p, &rc, &complete);
  assert_int_equal(rc, HKT_ERR_SEQUENCE);

  /* a frame of unknown type */
  uint8_t unk[] = { 'X', 'X', 'X', 'X' };
  write_raw_frames(p, v1, sizeof v1, unk, sizeof unk);
  read_all(p, &rc, &complete);
  assert_int_equal(rc, HKT_ERR_CORRUPT);

  /* garbage after a whole trace */
  write_trace(path, 100, 50, 1);
  uint8_t *buf;
  size_t len = file_load(path, &buf);
  buf = realloc(buf, len + 8);
  memcpy(buf + len, "garbage!", 8);
  file_store(p, buf, len + 8);
  assert_int_equal(read_all(p, &rc, &complete), 100);
  assert_true(HKT_IS_ERR(rc));
  free(buf);
}

/* A trace file from decompressed records (as the fuzz seeds keep them):
 * cut before each record tag, each piece a frame with a checksum. */
static void frames_from_raw(const char *raw, const char *dst) {
  uint8_t *in;
  size_t n = file_load(raw, &in);
  ZSTD_CCtx *z = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
  size_t cap = ZSTD_compressBound(n) + 64 * (n / 4 + 1), len = 0, start = 0;
  uint8_t *out = malloc(cap);
  assert_non_null(out);
  for (size_t i = 1; i <= n; i++) {
    if (i < n && !(n - i >= 4 && !memcmp(in + i, "HKT", 3) && strchr("HEZ", in[i + 3]) && in[i + 3])) continue;
    size_t c = ZSTD_compress2(z, out + len, cap - len, in + start, i - start);
    assert_false(ZSTD_isError(c));
    len += c;
    start = i;
  }
  file_store(dst, out, len);
  ZSTD_freeCCtx(z);
  free(out);
  free(in);
}

/* Version 1 traces (the fuzz seeds were written by the version 1 writer)
 * still read, and the writer's version 2 gives back every field of them;
 * appending to a version 1 trace is refused (its frames would not match
 * its header). */
static void test_v1_traces(void **state) {
  (void)state;
  int seeds = 0;
  for (int k = 0; k < 16; k++) {
    char raw[64], src[160];
    snprintf(raw, sizeof raw, "tests/fuzz/corpus/seed-%d.raw", k);
    if (access(raw, R_OK)) continue;
    snprintf(src, sizeof src, "%s/seed-%d.hkt.zst", tmpdir, k);
    frames_from_raw(raw, src);
    hkt_reader *r = NULL;
    assert_int_equal(hkt_reader_open(&r, src), 0);
    if (hkt_reader_header(r)->version != 1) { hkt_reader_close(r); continue; }
    seeds++;
    static hkt_event got[NEV];
    static char sv[NEV][80];
    int n = 0, e;
    hkt_writer *w = NULL;
    assert_int_equal(hkt_writer_open(&w, path, hkt_reader_header(r)), 0);
    while ((e = hkt_reader_next(r, &got[n])) > 0) {
      if (got[n].str) { snprintf(sv[n], sizeof sv[n], "%s", got[n].str); got[n].str = sv[n]; }
      got[n].bid = NULL;   /* build-ids: compared by length below */
      assert_int_equal(hkt_writer_put(w, &got[n]), 0);
      assert_true(++n < NEV);
    }
    assert_int_equal(e, 0);
    assert_int_equal(hkt_writer_close(w, hkt_reader_complete(r)), 0);
    hkt_reader_close(r);
    assert_int_equal(hkt_reader_open(&r, path), 0);
    assert_int_equal(hkt_reader_header(r)->version, 2);
    hkt_event ev;
    for (int i = 0; i < n; i++) {
      assert_int_equal(hkt_reader_next(r, &ev), 1);
      const hkt_event *x = &got[i];
      assert_int_equal(ev.seq, x->seq);
      assert_int_equal(ev.kind, x->kind);
      assert_int_equal(ev.tid, x->tid);
      assert_int_equal(ev.time_ns, x->time_ns);
      assert_int_equal(ev.fn, x->fn);
      assert_int_equal(ev.cls, x->cls);
      assert_int_equal(ev.ptr, x->ptr);
      assert_int_equal(ev.size, x->size);
      assert_int_equal(ev.aux, x->aux);
      assert_int_equal(ev.aux2, x->aux2);
      assert_int_equal(ev.aux3, x->aux3);
      assert_int_equal(ev.caller, x->caller);
      assert_int_equal(ev.stack_id, x->stack_id);
      if (x->str) assert_string_equal(ev.str, x->str);
      else assert_null(ev.str);
    }
    assert_int_equal(hkt_reader_next(r, &ev), 0);
    hkt_reader_close(r);
    /* append refuses the old version and leaves the file alone */
    char cp[160];
    snprintf(cp, sizeof cp, "%s/v1.hkt.zst", tmpdir);
    uint8_t *buf;
    size_t len = file_load(src, &buf);
    file_store(cp, buf, len);
    uint64_t next;
    assert_int_equal(hkt_writer_append(&w, cp, &next), HKT_ERR_VERSION);
    uint8_t *after;
    assert_int_equal(file_load(cp, &after), len);
    assert_memory_equal(after, buf, len);
    free(buf);
    free(after);
  }
  assert_true(seeds >= 1);
}

/* The version 2 models at their edges: threads sharing a slot (tid
 * modulo 32), frees across threads, blocks coming back in the order they
 * were freed (the stride) or from deep in a class's ring, rings that wrap
 * (more than 4096 frees of one class), REMOTE_PUSH bases on and off their
 * 1 MiB boundary, kinds past 30 (escaped), calloc class predictions that
 * overflow, a thread's times going backwards. Every field must come back. */
/* hkt_live (the live ranks a version 2 FREE is written as) against a plain
 * list: find and rank agree across words, groups, blocks and growth, and
 * after a reset. */
static void test_live_ranks(void **state) {
  (void)state;
  enum { N = 40000 };
  uint32_t *list = malloc(N * sizeof *list);   /* live numbers, oldest first */
  assert_non_null(list);
  hkt_live l;
  memset(&l, 0, sizeof l);
  l.tags = 1;
  for (int round = 0; round < 2; round++) {
    uint32_t nl = 0, made = 0;
    hkt_live_reset(&l);
    while (made < N) {
      if (nl == 0 || rnd() % 3) {   /* add */
        uint32_t k;
        assert_int_equal(hkt_live_add(&l, 5, 1000 + made, &k), 0);
        assert_int_equal(k, made);
        l.s[5].tag[k] = made * 7;
        list[nl++] = made++;
        continue;
      }
      /* kill: mostly a recent one, sometimes anywhere */
      uint32_t rank = rnd() % 4 ? (uint32_t)(rnd() % (nl < 70 ? nl : 70)) : (uint32_t)(rnd() % nl);
      uint32_t want = list[nl - 1 - rank];
      uint32_t k = hkt_live_find(&l, 5, rank);
      assert_int_equal(k, want);
      assert_int_equal(hkt_live_rank(&l, 5, k), rank);
      assert_int_equal(l.s[5].val[k], 1000 + want);
      assert_int_equal(l.s[5].tag[k], want * 7);
      hkt_live_kill(&l, 5, k);
      memmove(&list[nl - 1 - rank], &list[nl - rank], rank * sizeof *list);
      nl--;
      assert_int_equal(l.s[5].nlive, nl);
      assert_int_equal(hkt_live_find(&l, 5, nl), UINT32_MAX);   /* past the oldest */
      if (nl && rnd() % 8 == 0) {   /* the oldest and a dead number's rank */
        assert_int_equal(hkt_live_find(&l, 5, nl - 1), list[0]);
        assert_int_equal(hkt_live_rank(&l, 5, want), rank);
      }
    }
    assert_int_equal(l.s[4].nlive, 0);
    assert_int_equal(hkt_live_find(&l, 4, 0), UINT32_MAX);
  }
  hkt_live_release(&l);
  free(list);
}

static void test_v2_models(void **state) {
  (void)state;
  enum { N = 60000, T = 40, LIVE = 256 };
  static hkt_event m[N];
  static uint64_t live[T][LIVE];
  static uint64_t fifo[1 << 14];
  unsigned fhead = 0, ftail = 0;
  memset(live, 0, sizeof live);
  uint64_t next = 0x100000000000ull, t = 5000;
  for (int i = 0; i < N; i++) {
    hkt_event *e = &m[i];
    memset(e, 0, sizeof *e);
    uint32_t tid = (uint32_t)(rnd() % 6 == 0 ? rnd() % T : (uint64_t)(i / 3000 % T));
    e->tid = tid;
    t += rnd() % 4 ? rnd() % 300 : 0;
    e->time_ns = rnd() % 40 == 0 ? t - rnd() % 2000 : t;
    e->caller = 0x401000 + (rnd() % 3) * 16 + (tid % 2) * 64;
    int k = (int)(rnd() % LIVE), who = (int)(rnd() % 5 == 0 ? rnd() % T : tid);
    unsigned r = (unsigned)(rnd() % 100);
    if (r < 40 && live[who][k]) {           /* a free, maybe of another thread's block */
      e->kind = HKT_EV_FREE;
      e->ptr = live[who][k];
      e->cls = (uint32_t)(e->ptr >> 4) % 4;
      if (rnd() % 3 == 0 && ftail - fhead < (1u << 14)) fifo[ftail++ & ((1u << 14) - 1)] = e->ptr;
      live[who][k] = 0;
      if (i + 1 < N && rnd() % 2) {         /* a remote push right after it */
        hkt_event *p = &m[++i];
        memset(p, 0, sizeof *p);
        p->kind = HKT_EV_REMOTE_PUSH;
        p->tid = tid;
        p->time_ns = t;
        p->ptr = e->ptr;
        p->cls = e->cls;
        p->aux = rnd() % 4 ? e->ptr & ~0xfffffull : rnd() % 3 ? (e->ptr & ~0x1fffffull) : rvalue();
        p->aux2 = (uint64_t)(rnd() % 3);
      }
    } else if (r < 90) {                    /* an allocation: new, LIFO or FIFO reuse */
      e->kind = (uint16_t)(rnd() % 10 ? HKT_EV_MALLOC : HKT_EV_CALLOC);
      e->size = 1 + rnd() % 1000;
      if (e->kind == HKT_EV_CALLOC) e->aux = rnd() % 5 ? 1 + rnd() % 4 : UINT64_MAX / 2;
      if (fhead != ftail && rnd() % 3 == 0) e->ptr = fifo[fhead++ & ((1u << 14) - 1)];
      else if (rnd() % 4) e->ptr = next += 16 * (1 + rnd() % 3);
      else e->ptr = i > 0 && m[i - 1].kind == HKT_EV_FREE ? m[i - 1].ptr : (next += 48);
      e->cls = (uint32_t)(e->ptr >> 4) % 4;
      if (rnd() % 9 == 0) e->cls = HKT_NO_CLASS;
      if (!live[tid][k]) live[tid][k] = e->ptr;
    } else {                                /* anything else, now and then an escaped kind */
      e->kind = (uint16_t)(rnd() % 2 ? 31 + rnd() % 33 : 6 + rnd() % 17);
      e->ptr = rnd() % 2 ? rvalue() : 0;
      e->aux = rvalue();
      e->aux2 = rnd() % 2 ? rvalue() : 0;
      e->fn = (uint16_t)(rnd() % 4);
      e->cls = rnd() % 2 ? HKT_NO_CLASS : (uint32_t)(rnd() % 70);
      e->caller = rnd() % 2 ? e->caller : 0;
    }
  }
  for (uint32_t frame = 1000; frame <= 40000; frame *= 40) {   /* small frames, and rings that wrap */
    hkt_header h = hdr;
    h.num_classes = 4;
    for (int c = 0; c < 4; c++) h.class_size[c] = 16u << c;
    hkt_reader *r = write_and_open(&h, frame, m, N);
    hkt_event ev;
    int n = 0;
    while (hkt_reader_next(r, &ev) > 0) {
      const hkt_event *x = &m[n];
      assert_int_equal(ev.kind, x->kind);
      assert_int_equal(ev.tid, x->tid);
      assert_int_equal(ev.time_ns, x->time_ns);
      assert_int_equal(ev.ptr, x->ptr);
      assert_int_equal(ev.cls, x->cls);
      assert_int_equal(ev.size, x->size);
      assert_int_equal(ev.aux, x->aux);
      assert_int_equal(ev.aux2, x->aux2);
      assert_int_equal(ev.fn, x->fn);
      assert_int_equal(ev.caller, x->caller);
      n++;
    }
    assert_int_equal(n, N);
    assert_true(hkt_reader_complete(r));
    hkt_reader_close(r);
  }
  /* kinds the format cannot hold are refused, not written wrong */
  hkt_writer *w;
  assert_int_equal(hkt_writer_open(&w, path, &hdr), 0);
  hkt_event bad = { .kind = 64 };
  assert_int_equal(hkt_writer_put(w, &bad), HKT_ERR_ARG);
  bad.kind = 0;
  assert_int_equal(hkt_writer_put(w, &bad), HKT_ERR_ARG);
  assert_int_equal(hkt_writer_close(w, 1), 0);
}

/* Append: a cut trace goes on where its whole frames end. */
static void test_append(void **state) {
  (void)state;
  write_trace(path, 3000, 400, 0);     /* no end frame */
  uint8_t *buf;
  size_t len = file_load(path, &buf);
  file_store(path, buf, len - 7);      /* and a partial last frame */
  free(buf);
  hkt_writer *w;
  uint64_t next;
  assert_int_equal(hkt_writer_append(&w, path, &next), 0);
  assert_int_equal(next, 2800);        /* 7 whole frames of 400 */
  for (int i = 2800; i < NEV; i++) assert_int_equal(hkt_writer_put(w, &evs[i]), 0);
  assert_int_equal(hkt_writer_close(w, 1), 0);
  int rc, complete;
  assert_int_equal(read_all(path, &rc, &complete), NEV);
  assert_int_equal(rc, 0);
  assert_true(complete);
  /* appending to a complete trace drops its end frame and goes on */
  assert_int_equal(hkt_writer_append(&w, path, &next), 0);
  assert_int_equal(next, NEV);
  assert_int_equal(hkt_writer_close(w, 1), 0);
  assert_int_equal(read_all(path, &rc, &complete), NEV);
  assert_true(complete);
}

/* The writer survives a full disk with an error code, not a crash. */
static void test_full_disk(void **state) {
  (void)state;
  if (access("/dev/full", W_OK)) skip();
  hkt_writer *w;
  int e = hkt_writer_open(&w, "/dev/full", &hdr);
  assert_int_equal(e, HKT_ERR_IO);
  assert_int_equal(errno, ENOSPC);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_names),
    cmocka_unit_test(test_round_trip),
    cmocka_unit_test(test_round_trip_heap),
    cmocka_unit_test(test_class_edges),
    cmocka_unit_test(test_wide_classes),
    cmocka_unit_test(test_time_shift),
    cmocka_unit_test(test_zstd_cli),
    cmocka_unit_test(test_truncation),
    cmocka_unit_test(test_corruption),
    cmocka_unit_test(test_batch_into),
    cmocka_unit_test(test_stream_ends),
    cmocka_unit_test(test_bad_files),
    cmocka_unit_test(test_v1_traces),
    cmocka_unit_test(test_live_ranks),
    cmocka_unit_test(test_v2_models),
    cmocka_unit_test(test_append),
    cmocka_unit_test(test_full_disk),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
