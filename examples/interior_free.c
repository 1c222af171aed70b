/* interior_free.c — free() of a pointer into the middle of a block.
 *
 * trim() returns its argument advanced past leading blanks; the caller
 * frees what trim() returned instead of what malloc() did.
 *
 *   LD_PRELOAD=libhakmem.so ./interior_free      (caught at any debug level) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *trim(char *s) {
  while (*s == ' ') s++;
  return s;
}

int main(void) {
  char *line = malloc(64);
  if (!line) return 1;
  strcpy(line, "    indented text");
  char *t = trim(line);
  printf("interior_free: '%s'\n", t);
  free(t);              /* should be free(line) */
  return 0;
}
