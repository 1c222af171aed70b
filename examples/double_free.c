/* double_free.c — a double free on an error path.
 *
 * parse_record() owns `buf` and frees it when a record is malformed; the
 * caller's cleanup frees it again. Most records are well formed, so the
 * bug stays hidden until one is not.
 *
 *   HAKMEM_DEBUG=1 LD_PRELOAD=libhakmem.so ./double_free */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Copy "key=value" into a fresh buffer; on a malformed record free it and
 * report failure (the callee cleans up...). */
static int parse_record(const char *rec, char **out) {
  char *buf = malloc(strlen(rec) + 1);
  if (!buf) return -1;
  strcpy(buf, rec);
  *out = buf;
  if (!strchr(buf, '=')) {
    free(buf);          /* ...and so does the caller: the bug */
    return -1;
  }
  return 0;
}

int main(void) {
  const char *records[] = {"name=hakmem", "size=1024", "threads=4", "garbage", "mode=fast"};
  unsigned ok = 0;
  for (size_t i = 0; i < sizeof records / sizeof records[0]; i++) {
    char *buf = NULL;
    int rc = parse_record(records[i], &buf);
    if (rc == 0) ok++;
    free(buf);          /* cleanup on every path */
  }
  printf("double_free: parsed %u records\n", ok);
  return 0;
}
