/* spool.c — create and map the spool file (layout in spool.h), and the
 * clock arithmetic both its writers and its readers need.
 *
 * Creation runs inside the process's first malloc: raw syscalls and the
 * stack only. The file's blocks are reserved with fallocate, so a full disk
 * shows at start (recording is then off, reported once) and never as a
 * SIGBUS while writing into the mapping. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>
#include "spool.h"

static void layout(hkt_spool *s) {
  s->dir = (hkt_chunk_hdr *)(s->base + HKT_SPOOL_DIR_OFF);
  s->stacks = (hkt_stack_ent *)(s->base + s->h->stacks_off);
  s->stack_idx = (uint32_t *)(s->stacks + s->h->stack_cap);
  s->sframes = (uint64_t *)(s->base + s->h->sframes_off);
}

int hkt_spool_create(hkt_spool *s, const char *path, uint64_t bytes, uint32_t stack_cap) {
  memset(s, 0, sizeof *s);
  uint64_t nchunks = bytes / HKT_CHUNK_BYTES;
  if (nchunks < 16) nchunks = 16;
  if (nchunks > (1u << 20)) nchunks = 1u << 20;
  uint64_t dir_end = HKT_SPOOL_DIR_OFF + nchunks * sizeof(hkt_chunk_hdr);
  uint64_t stacks_off = (dir_end + 4095) & ~4095ull;
  uint64_t sframes_cap = (uint64_t)stack_cap * 16;
  uint64_t sframes_off = stacks_off + (uint64_t)stack_cap * (sizeof(hkt_stack_ent) + 2 * sizeof(uint32_t));
  sframes_off = (sframes_off + 4095) & ~4095ull;
  uint64_t mods_off = (sframes_off + sframes_cap * 8 + 4095) & ~4095ull;
  uint64_t chunks_off = mods_off + HKT_SPOOL_MODS_MAX;
  uint64_t len = chunks_off + nchunks * HKT_CHUNK_BYTES;

  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return -errno;
  int e = posix_fallocate(fd, 0, (off_t)len);
  if (e == EOPNOTSUPP || e == EINVAL) e = ftruncate(fd, (off_t)len) ? errno : 0;
  if (e) { close(fd); unlink(path); return -e; }
  void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  e = errno;
  close(fd);
  if (m == MAP_FAILED) { unlink(path); return -e; }
  s->base = m;
  s->len = len;
  s->h = m;
  hkt_spool_hdr *h = s->h;
  memcpy(h->magic, HKT_SPOOL_MAGIC, 8);
  h->version = HKT_SPOOL_VERSION;
  h->chunk_bytes = HKT_CHUNK_BYTES;
  h->nchunks = (uint32_t)nchunks;
  h->stack_cap = stack_cap;
  h->file_bytes = len;
  h->chunks_off = chunks_off;
  h->stacks_off = stacks_off;
  h->sframes_off = sframes_off;
  h->sframes_cap = sframes_cap;
  h->mods_off = mods_off;
  h->end_seq = UINT64_MAX;
  for (uint64_t i = 0; i < nchunks; i++) ((hkt_chunk_hdr *)((uint8_t *)m + HKT_SPOOL_DIR_OFF))[i].claim_seq = UINT64_MAX;
  layout(s);
  return 0;
}

int hkt_spool_map(hkt_spool *s, const char *path, char *why, size_t why_len) {
  memset(s, 0, sizeof *s);
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) { snprintf(why, why_len, "%s", strerror(errno)); return HKT_ERR_IO; }
  struct stat st;
  hkt_spool_hdr hd;
  if (fstat(fd, &st) || pread(fd, &hd, sizeof hd, 0) != (ssize_t)sizeof hd || memcmp(hd.magic, HKT_SPOOL_MAGIC, 8)) {
    close(fd);
    snprintf(why, why_len, "not a hakmem spool file");
    return HKT_ERR_NOT_TRACE;
  }
  if (hd.version != HKT_SPOOL_VERSION) {
    close(fd);
    snprintf(why, why_len, "spool version %u, this build reads %u", hd.version, HKT_SPOOL_VERSION);
    return HKT_ERR_VERSION;
  }
  uint64_t dir_end = HKT_SPOOL_DIR_OFF + (uint64_t)hd.nchunks * sizeof(hkt_chunk_hdr);
  if (hd.chunk_bytes != HKT_CHUNK_BYTES || !hd.nchunks || hd.file_bytes != (uint64_t)st.st_size ||
      hd.stacks_off < dir_end || hd.sframes_off < hd.stacks_off ||
      hd.sframes_off - hd.stacks_off < (uint64_t)hd.stack_cap * (sizeof(hkt_stack_ent) + 8) ||
      hd.mods_off < hd.sframes_off + hd.sframes_cap * 8 || hd.chunks_off < hd.mods_off + HKT_SPOOL_MODS_MAX ||
      hd.mods_len > HKT_SPOOL_MODS_MAX ||
      hd.chunks_off + (uint64_t)hd.nchunks * hd.chunk_bytes > hd.file_bytes) {
    close(fd);
    snprintf(why, why_len, "spool layout is damaged (or the file was cut)");
    return HKT_ERR_CORRUPT;
  }
  void *m = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  close(fd);
  if (m == MAP_FAILED) { snprintf(why, why_len, "mmap: %s", strerror(e)); return HKT_ERR_IO; }
  s->base = m;
  s->len = (uint64_t)st.st_size;
  s->h = m;
  s->h->trace_path[sizeof s->h->trace_path - 1] = 0;
  ((char *)s->base)[HKT_SPOOL_CMDLINE_OFF + HKT_SPOOL_CMDLINE_MAX - 1] = 0;
  ((char *)s->base)[HKT_SPOOL_CONFIG_OFF + HKT_SPOOL_CONFIG_MAX - 1] = 0;
  layout(s);
  return 0;
}

void hkt_spool_unmap(hkt_spool *s) {
  if (s->base) munmap(s->base, s->len);
  memset(s, 0, sizeof *s);
}

void hkt_spool_header(const hkt_spool *s, hkt_header *h) {
  const hkt_spool_hdr *sh = s->h;
  memset(h, 0, sizeof *h);
  h->version = HKT_FORMAT_VERSION;
  h->pid = sh->pid;
  h->ppid = sh->ppid;
  h->start_realtime_ns = sh->start_realtime_ns;
  h->clock = sh->clock_tsc ? "tsc" : "monotonic";
  h->cmdline = (const char *)s->base + HKT_SPOOL_CMDLINE_OFF;
  h->config = (const char *)s->base + HKT_SPOOL_CONFIG_OFF;
  h->arena_base = sh->arena_base;
  h->num_classes = sh->num_classes > 64 ? 64 : sh->num_classes;
  memcpy(h->class_size, sh->class_size, sizeof h->class_size);
  h->time_shift = sh->time_shift;
  uint64_t mult = atomic_load(&((hkt_spool_hdr *)sh)->tsc_mult);
  h->tsc_per_sec = sh->clock_tsc && mult ? (uint64_t)((1000000000ull << 32) / mult) : 0;
  h->forked = sh->fork_seq1 != 0;
  h->fork_seq = sh->fork_seq1 ? sh->fork_seq1 - 1 : 0;
  h->parent_trace = sh->parent_trace;
}

/* TSC ticks -> ns multiplier (<< 32), measured against CLOCK_MONOTONIC
 * since (tsc0, mono0); waits until at least 20 ms have passed. */
uint64_t hkt_tsc_calibrate(uint64_t tsc0, uint64_t mono0) {
  uint64_t m = hkt_mono_ns();
  if (m < mono0 + 20000000u) {
    struct timespec ts = { 0, (long)(mono0 + 20000000u - m) };
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
  }
  uint64_t t1 = __rdtsc(), m1 = hkt_mono_ns();
  if (t1 <= tsc0 || m1 <= mono0) return 1ull << 32;
  return (uint64_t)(((unsigned __int128)(m1 - mono0) << 32) / (t1 - tsc0));
}
