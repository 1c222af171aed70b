/* overflow.c — a one-byte heap overflow: malloc(strlen(s)) then strcpy.
 *
 * The terminating NUL lands one byte past the block the program asked for.
 * Inside hakmem's size class there is room, so nothing crashes: the byte
 * silently clobbers whatever shares the block's slack, or nothing at all.
 *
 *   HAKMEM_DEBUG=2 LD_PRELOAD=libhakmem.so ./overflow */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dup_name(const char *s) {
  char *d = malloc(strlen(s));   /* forgot the + 1 */
  if (d) strcpy(d, s);
  return d;
}

int main(void) {
  const char *names[] = {"alpha", "bravo", "charlie", "delta", "a-name-of-twenty-one"};
  size_t total = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char *d = dup_name(names[i]);
    if (!d) return 1;
    total += strlen(d);
    free(d);
  }
  printf("overflow: %zu bytes of names\n", total);
  return 0;
}
