/* badfree.c — free() a pointer the allocator never handed out.
 *
 *   badfree stack|interior|interior-large|foreign
 *
 * Prints "ptr 0x..." (the pointer about to be freed) and flushes, frees it,
 * then prints "after" and exits 0: reaching "after" means the bad free was
 * ignored (HAKMEM_ON_ERROR=continue) or not detected. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

int main(int argc, char **argv) {
  const char *mode = argc > 1 ? argv[1] : "stack";
  volatile long local[8] = {0};
  char *p;
  if (strcmp(mode, "stack") == 0) {
    p = (char *)&local[2];
  } else if (strcmp(mode, "interior") == 0) {
    p = (char *)malloc(64) + 16;
  } else if (strcmp(mode, "interior-large") == 0) {
    p = (char *)malloc(4 << 20) + 8192;
  } else if (strcmp(mode, "foreign") == 0) {  /* memory of its own mapping */
    p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return 2;
    p += 4096;
  } else {
    fprintf(stderr, "badfree: unknown mode %s\n", mode);
    return 2;
  }
  printf("ptr %#lx\n", (unsigned long)(uintptr_t)p);
  fflush(stdout);
  free(p);
  printf("after\n");
  char *q = malloc(100);  /* the heap still works */
  if (!q) return 3;
  free(q);
  return 0;
}
