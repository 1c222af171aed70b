/* addrs.c — a fixed sequence of allocation calls, printing every address.
 * With HAKMEM_ARENA_BASE fixed, two runs must print the same lines. */
#define _GNU_SOURCE
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  static const size_t sizes[] = {1, 8, 24, 100, 1000, 1024, 1025, 3000, 8192, 40000,
                                 100000, 1 << 20, 3 << 20, 17, 512};
  enum { N = sizeof sizes / sizeof *sizes, ROUNDS = 6 };
  void *live[N * ROUNDS];
  size_t n = 0;
  char line[128];
  /* Collect the output first; printing would interleave stdio's buffer
   * allocation with the sequence under test (it is deterministic, but
   * keeping it out makes a mismatch easier to read). */
  static char out[1 << 16];
  size_t len = 0;
  for (int r = 0; r < ROUNDS; r++) {
    for (size_t i = 0; i < N; i++) {
      void *p;
      switch ((r + i) % 4) {
        case 0: p = calloc(1, sizes[i]); break;
        case 1: p = memalign(64, sizes[i]); break;
        case 2: p = realloc(NULL, sizes[i]); break;
        default: p = malloc(sizes[i]); break;
      }
      live[n++] = p;
      len += (size_t)snprintf(line, sizeof line, "%d %zu %#lx\n", r, sizes[i], (unsigned long)(uintptr_t)p);
      if (len < sizeof out) strcat(out, line);
    }
    for (size_t i = 0; i < n; i += 3) { free(live[i]); live[i] = NULL; }  /* holes to reuse */
  }
  for (size_t i = 0; i < n; i++) free(live[i]);
  fputs(out, stdout);
  return 0;
}
