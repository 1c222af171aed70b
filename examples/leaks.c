/* leaks.c — memory leaked from two callsites.
 *
 * make_session() leaks its small session record when the caller drops it;
 * load_config() leaks a 4 KiB buffer on every reload. The program exits
 * normally: only a report by callsite shows where the memory went.
 *
 *   hakmem record -o leaks.hkt.zst -- ./leaks && hakmem analyze leaks.hkt.zst */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct session { int id; char user[40]; };

__attribute__((noinline)) static struct session *make_session(int id) {
  struct session *s = malloc(sizeof *s);       /* leak 1: 44 bytes each */
  if (s) { s->id = id; snprintf(s->user, sizeof s->user, "user%d", id); }
  return s;
}

__attribute__((noinline)) static char *load_config(int gen) {
  char *cfg = malloc(4096);                    /* leak 2: 4 KiB each */
  if (cfg) snprintf(cfg, 4096, "generation=%d\n", gen);
  return cfg;
}

int main(void) {
  long sum = 0;
  for (int i = 0; i < 100; i++) {
    struct session *s = make_session(i);
    if (s) sum += s->id;                       /* never freed */
    if (i % 10 == 0) {
      char *cfg = load_config(i / 10);         /* replaced, never freed */
      if (cfg) sum += (long)strlen(cfg);
    }
    char *tmp = malloc(100);                   /* freed: not a leak */
    if (tmp) { snprintf(tmp, 100, "%d", i); sum += (long)strlen(tmp); }
    free(tmp);
  }
  printf("leaks: done (%ld)\n", sum);
  return 0;
}
