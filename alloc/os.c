/* os.c — the only file that talks to the kernel.
 *
 * Everything here works before libc is fully up and never allocates: the
 * allocator's first call may come from the dynamic loader. Messages are
 * formatted into a stack buffer and written with one write(2). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "internal.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

/* Address space only: no access, no commit charge. With `fixed` the range
 * must land exactly at hint or the call fails. */
void *_hak_os_reserve(uint64_t hint, size_t size, int fixed) {
  int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
  if (fixed) flags |= MAP_FIXED_NOREPLACE;
  void *p = mmap((void *)hint, size, PROT_NONE, flags, -1, 0);
  if (p == MAP_FAILED) return NULL;
  if (fixed && (uint64_t)p != hint) { munmap(p, size); return NULL; }
  return p;
}

int _hak_os_commit(void *p, size_t size) {
  if (mprotect(p, size, PROT_READ | PROT_WRITE) != 0) return -1;
  atomic_fetch_add_explicit(&_hak_g.os_commits, 1, memory_order_relaxed);
  return 0;
}

/* Give the pages back but keep them mapped: the range stays ours, so its
 * addresses are reused deterministically. */
void _hak_os_decommit(void *p, size_t size) {
  madvise(p, size, MADV_DONTNEED);
  atomic_fetch_add_explicit(&_hak_g.os_decommits, 1, memory_order_relaxed);
}

void _hak_os_release(void *p, size_t size) { munmap(p, size); }

void *_hak_os_alloc_meta(size_t size) {
  void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}

void _hak_os_write(int fd, const char *s, size_t n) {
  int saved = errno;
  while (n > 0) {
    ssize_t w = write(fd, s, n);
    if (w <= 0) { if (w < 0 && errno == EINTR) continue; break; }
    s += w; n -= (size_t)w;
  }
  errno = saved;
}

/* vsnprintf with plain %s %d %u %x %p %zu %llu... does not allocate in glibc. */
int _hak_fmt(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int r = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  return r;
}

void _hak_msg(const char *fmt, ...) {
  char buf[512];
  size_t k = 8;
  memcpy(buf, "hakmem: ", k);
  va_list ap;
  va_start(ap, fmt);
  int r = vsnprintf(buf + k, sizeof buf - k - 1, fmt, ap);
  va_end(ap);
  if (r < 0) r = 0;
  k += (size_t)r < sizeof buf - k - 1 ? (size_t)r : sizeof buf - k - 2;
  buf[k++] = '\n';
  _hak_os_write(2, buf, k);
}

uint64_t _hak_os_tid(void) { return (uint64_t)syscall(SYS_gettid); }

uint64_t _hak_os_random(void) {
  uint64_t r = 0;
  if (getrandom(&r, sizeof r, GRND_NONBLOCK) != sizeof r)
    r = (uint64_t)(uintptr_t)&r ^ ((uint64_t)getpid() << 32);
  return r;
}

void _hak_lock_slow(hak_lock_t *l) {
  for (unsigned spin = 0; spin < 100; spin++) {
    int z = 0;
    if (!atomic_load_explicit(&l->v, memory_order_relaxed) &&
        atomic_compare_exchange_weak_explicit(&l->v, &z, 1, memory_order_acquire, memory_order_relaxed))
      return;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }
  /* Mark it contended; whoever unlocks wakes one sleeper. */
  while (atomic_exchange_explicit(&l->v, 2, memory_order_acquire) != 0)
    syscall(SYS_futex, &l->v, FUTEX_WAIT_PRIVATE, 2, NULL, NULL, 0);
}

void _hak_unlock_wake(hak_lock_t *l) {
  syscall(SYS_futex, &l->v, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}
