/* fork_threads.c — fork while other threads allocate; the child must be
 * able to allocate and free (run under LD_PRELOAD=libhakmem.so).
 *
 *   fork_threads [FORKS]
 *
 * Two threads malloc/realloc/free in a loop while the main thread forks
 * FORKS times. Each child allocates and frees blocks of every size class,
 * checks their contents, starts a thread of its own that does the same,
 * forks once more, and exits (half through exit(), half through _exit()).
 * Prints "fork_threads: N forks ok" and exits 0 when every child did. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static atomic_int stop;

static uint64_t next(uint64_t *s) {
  *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
  return *s;
}

static size_t some_size(uint64_t *s) {
  uint64_t r = next(s) % 100;
  if (r < 70) return next(s) % 1024 + 1;
  if (r < 98) return next(s) % 60000 + 1025;
  return next(s) % (1u << 20) + 65536;
}

/* Allocate, fill, check and free `rounds` blocks; 0 if all held their bytes. */
static int churn(uint64_t seed, int rounds) {
  enum { LIVE = 64 };
  unsigned char *live[LIVE] = {0};
  size_t size[LIVE] = {0};
  int bad = 0;
  for (int i = 0; i < rounds; i++) {
    int k = (int)(next(&seed) % LIVE);
    if (live[k]) {
      for (size_t j = 0; j < size[k]; j += 61)
        if (live[k][j] != (unsigned char)(k + j)) { bad = 1; break; }
      free(live[k]);
    }
    size[k] = some_size(&seed);
    live[k] = (next(&seed) & 7) == 0 ? calloc(1, size[k]) : malloc(size[k]);
    if (!live[k]) return 1;
    if (next(&seed) % 5 == 0) {
      unsigned char *r = realloc(live[k], size[k] / 2 + 1);
      if (!r) return 1;
      live[k] = r;
      size[k] = size[k] / 2 + 1;
    }
    for (size_t j = 0; j < size[k]; j += 61) live[k][j] = (unsigned char)(k + j);
  }
  for (int k = 0; k < LIVE; k++) free(live[k]);
  return bad;
}

static void *busy(void *arg) {
  uint64_t seed = (uintptr_t)arg * 7919 + 1;
  while (!atomic_load(&stop))
    if (churn(next(&seed), 500)) {
      fprintf(stderr, "fork_threads: parent thread saw corrupted memory\n");
      exit(3);
    }
  return NULL;
}

static void *child_thread(void *arg) {
  return (void *)(intptr_t)churn((uintptr_t)arg, 500);
}

static int child_main(int i) {
  alarm(20);  /* a deadlocked child dies instead of hanging the test */
  if (churn((uint64_t)i * 31 + 5, 1000)) return 1;
  char *s = strdup("allocated in the child");
  if (!s || strcmp(s, "allocated in the child") != 0) return 1;
  free(s);
  pthread_t t;
  void *res;
  if (pthread_create(&t, NULL, child_thread, (void *)(uintptr_t)(i + 100)) != 0) return 1;
  if (pthread_join(t, &res) != 0 || res) return 1;
  if (i % 5 == 0) {  /* a grandchild */
    pid_t g = fork();
    if (g == 0) _exit(churn(99, 500));
    int st;
    if (g < 0 || waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st)) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  int forks = argc > 1 ? atoi(argv[1]) : 20;
  pthread_t th[2];
  for (int i = 0; i < 2; i++) pthread_create(&th[i], NULL, busy, (void *)(uintptr_t)(i + 1));
  int failed = 0;
  for (int i = 0; i < forks; i++) {
    struct timespec ts = {0, 2 * 1000 * 1000};
    nanosleep(&ts, NULL);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) { perror("fork_threads: fork"); return 2; }
    if (pid == 0) {
      int rc = child_main(i);
      if (i % 2) exit(rc);
      _exit(rc);
    }
    int st;
    if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
      fprintf(stderr, "fork_threads: child %d %s %d\n", i,
              WIFSIGNALED(st) ? "killed by signal" : "exited with", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
      failed++;
    }
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < 2; i++) pthread_join(th[i], NULL);
  if (failed) return 1;
  printf("fork_threads: %d forks ok\n", forks);
  return 0;
}
