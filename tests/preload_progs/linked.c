/* linked.c — a program linked with -lhakmem (no LD_PRELOAD): its malloc
 * family must be hakmem's, and the hak_* API must see the same heap.
 * Prints "linked: ok" and exits 0, or names what is wrong and exits 1. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hakmem.h"

static uint64_t total_allocs(void) {
  hak_stats s;
  hak_stats_get(&s);
  uint64_t n = s.large_allocs;
  for (uint32_t i = 0; i < s.num_classes && i < HAK_NUM_CLASSES; i++) n += s.cls[i].allocs;
  return n;
}

int main(void) {
  Dl_info info;
  if (!dladdr((void *)(uintptr_t)&malloc, &info) || !info.dli_fname ||
      !strstr(info.dli_fname, "libhakmem")) {
    printf("linked: malloc resolves to %s, not libhakmem\n", info.dli_fname ? info.dli_fname : "?");
    return 1;
  }
  uint64_t before = total_allocs();
  char *blocks[100];
  for (int i = 0; i < 100; i++) {
    blocks[i] = malloc((size_t)i * 97 + 1);
    if (!blocks[i]) { printf("linked: malloc failed\n"); return 1; }
    memset(blocks[i], i, (size_t)i * 97 + 1);
  }
  uint64_t after = total_allocs();
  if (after - before < 100) {
    printf("linked: 100 mallocs moved hakmem's alloc counters by %llu\n",
           (unsigned long long)(after - before));
    return 1;
  }
  for (int i = 0; i < 100; i++) {
    if (malloc_usable_size(blocks[i]) != hak_malloc_usable_size(blocks[i]) ||
        hak_malloc_usable_size(blocks[i]) < (size_t)i * 97 + 1) {
      printf("linked: malloc_usable_size disagrees with hakmem's for block %d\n", i);
      return 1;
    }
    if (i % 2) free(blocks[i]);
    else hak_free(blocks[i]);  /* the two names reach one heap */
  }
  char *s = strdup("hello from a linked program");
  printf("linked: ok (%s)\n", s);
  free(s);
  return 0;
}
