/* fuzz_reader.c — libFuzzer target for the trace reader: any bytes, as a
 * file, must give events or a clean error, never a crash, a leak or an
 * out-of-bounds access. Built by tests/fuzz/run.sh with
 * -fsanitize=fuzzer,address and -DHKT_FUZZ (the reader's memory then comes
 * from malloc, so ASan sees every byte).
 *
 * Two ways to read an input, so that mutations reach the record parser and
 * not only zstd's checksum check: a file that starts with the zstd magic
 * is read as it is; anything else is taken as decompressed record content,
 * cut before each "HKTH"/"HKTE"/"HKTZ" tag, and each piece is compressed
 * into a frame of its own (with a checksum) before the reader sees it. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <zstd.h>
#include "hakmem/trace.h"

static int fd = -1;
static char path[64];

static int is_tag(const uint8_t *p, size_t left) {
  return left >= 4 && p[0] == 'H' && p[1] == 'K' && p[2] == 'T' && (p[3] == 'H' || p[3] == 'E' || p[3] == 'Z');
}

/* Compress the pieces of `data` into frames; returns the file's bytes. */
static uint8_t *as_frames(const uint8_t *data, size_t size, size_t *out_len) {
  static ZSTD_CCtx *z;
  if (!z) {
    z = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(z, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(z, ZSTD_c_compressionLevel, 1);
  }
  size_t cap = ZSTD_compressBound(size) + 64 * (size / 4 + 1), len = 0;
  uint8_t *out = malloc(cap);
  if (!out) return NULL;
  size_t start = 0;
  for (size_t i = 1; i <= size; i++) {
    if (i < size && !is_tag(data + i, size - i)) continue;
    size_t n = ZSTD_compress2(z, out + len, cap - len, data + start, i - start);
    if (ZSTD_isError(n)) { free(out); return NULL; }
    len += n;
    start = i;
  }
  *out_len = len;
  return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (fd < 0) {
    fd = memfd_create("hkt-fuzz", 0);
    if (fd < 0) return 0;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  uint8_t *framed = NULL;
  if (size >= 4 && !(data[0] == 0x28 && data[1] == 0xb5 && data[2] == 0x2f && data[3] == 0xfd)) {
    framed = as_frames(data, size, &size);
    if (!framed) return 0;
    data = framed;
  }
  int w = ftruncate(fd, 0) || pwrite(fd, data, size, 0) != (ssize_t)size;
  free(framed);
  if (w) return 0;
  hkt_reader *r = NULL;
  int e = hkt_reader_open(&r, path);
  if (HKT_IS_ERR(e)) {
    if (strlen(hkt_reader_errmsg(r ? r : NULL)) == 0) __builtin_trap();   /* every error says why */
    hkt_reader_close(r);
    return 0;
  }
  const hkt_header *h = hkt_reader_header(r);
  size_t sum = strlen(h->clock) + strlen(h->cmdline) + strlen(h->config);
  for (uint32_t i = 0; i < h->num_modules; i++) sum += strlen(h->modules[i].path) + h->modules[i].build_id_len;
  hkt_event ev;
  uint64_t expect = 0;
  for (int n = 0; n < 1000000 && (e = hkt_reader_next(r, &ev)) > 0; n++) {
    if (ev.seq != expect++) __builtin_trap();
    if (ev.str) sum += strlen(ev.str);
    for (uint32_t i = 0; i < ev.bid_len; i++) sum += ev.bid[i];
    const uint64_t *fr;
    uint32_t nf;
    if (ev.stack_id && hkt_reader_stack(r, ev.stack_id, &fr, &nf) == 0)
      for (uint32_t i = 0; i < nf; i++) sum += fr[i];
    sum += hkt_kind_name(ev.kind)[0] + hkt_fn_name(ev.fn)[0];
  }
  if (HKT_IS_ERR(e) && (strlen(hkt_reader_errmsg(r)) == 0 || hkt_reader_next(r, &ev) != e)) __builtin_trap();
  (void)hkt_reader_complete(r);
  (void)hkt_reader_offset(r);
  hkt_reader_close(r);
  return sum == 1 ? 1 : 0;   /* use sum so nothing is optimized away */
}
