/* decode_lean — the trace decoder alone, as the replay's reader thread
 * drives it: hkt_reader_skip(TIME | CALLER), then hkt_reader_batch_into 64
 * events at a time, summing a few fields so that nothing is optimized away.
 *
 *   decode_lean [-l LIB] [-n ROUNDS] [--full] [--check] TRACE
 *
 * The reader comes from LIB (default: ../lib/libhakmem.so beside this
 * binary), opened with dlopen RTLD_LOCAL so that it does not take over
 * malloc: the same driver times two builds of the reader side by side.
 * --full reads every field (no skip); --check hashes every field the
 * consumer may read (all but the skipped ones), in order, so that two
 * builds can be compared event for event. Prints the events, the CPU time of
 * the best and the median round, and ns per event of both. */
#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "hakmem/trace.h"

typedef int (*open_fn)(hkt_reader **, const char *);
typedef int (*skip_fn)(hkt_reader *, unsigned);
typedef int (*batch_fn)(hkt_reader *, hkt_event *, unsigned);
typedef void (*close_fn)(hkt_reader *);
typedef const char *(*errmsg_fn)(const hkt_reader *);

static double cpu_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* FNV-1a-like over the fields, in order; time and caller only if read. */
static uint64_t hash_events(uint64_t h, const hkt_event *ev, int n, int full) {
  for (int i = 0; i < n; i++, ev++) {
    uint64_t f[] = { ev->seq, ev->tid, ev->kind, ev->fn, ev->cls, ev->stack_id, ev->ptr, ev->size, ev->aux,
                     ev->aux2, ev->aux3, ev->bid_len, ev->str ? 1u + strlen(ev->str) : 0,
                     full ? ev->time_ns : 0, full ? ev->caller : 0 };
    for (unsigned k = 0; k < sizeof f / sizeof *f; k++) h = (h ^ f[k]) * 0x100000001b3ull;
  }
  return h;
}

int main(int argc, char **argv) {
  const char *lib = NULL, *path = NULL;
  int rounds = 5, full = 0, check = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "-l") && i + 1 < argc) lib = argv[++i];
    else if (!strcmp(argv[i], "-n") && i + 1 < argc) rounds = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--full")) full = 1;
    else if (!strcmp(argv[i], "--check")) check = 1;
    else if (argv[i][0] != '-' && !path) path = argv[i];
    else {
      fprintf(stderr, "usage: decode_lean [-l LIB] [-n ROUNDS] [--full] [--check] TRACE\n");
      return 2;
    }
  }
  if (!path || rounds < 1 || rounds > 1000) {
    fprintf(stderr, "usage: decode_lean [-l LIB] [-n ROUNDS] [--full] [--check] TRACE\n");
    return 2;
  }
  char def[PATH_MAX];
  if (!lib) {   /* ../lib/libhakmem.so from this binary's directory */
    ssize_t n = readlink("/proc/self/exe", def, sizeof def - 32);
    if (n <= 0) { fprintf(stderr, "decode_lean: cannot find its own path\n"); return 2; }
    def[n] = 0;
    char *slash = strrchr(def, '/');
    strcpy(slash ? slash + 1 : def, "../lib/libhakmem.so");
    lib = def;
  }
  void *h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
  if (!h) { fprintf(stderr, "decode_lean: %s\n", dlerror()); return 2; }
  open_fn r_open = (open_fn)dlsym(h, "hkt_reader_open");
  skip_fn r_skip = (skip_fn)dlsym(h, "hkt_reader_skip");
  batch_fn r_batch = (batch_fn)dlsym(h, "hkt_reader_batch_into");
  close_fn r_close = (close_fn)dlsym(h, "hkt_reader_close");
  errmsg_fn r_errmsg = (errmsg_fn)dlsym(h, "hkt_reader_errmsg");
  if (!r_open || !r_skip || !r_batch || !r_close || !r_errmsg) {
    fprintf(stderr, "decode_lean: %s: no reader API in it\n", lib);
    return 2;
  }
  double *t = calloc((size_t)rounds, sizeof *t);
  if (!t) return 2;
  static hkt_event evs[64];
  uint64_t events = 0, sum = 0;
  for (int k = 0; k < rounds; k++) {
    hkt_reader *r;
    double t0 = cpu_now();
    if (r_open(&r, path)) {
      fprintf(stderr, "decode_lean: %s\n", r_errmsg(NULL));
      r_close(r);
      return 1;
    }
    if (!full) r_skip(r, HKT_SKIP_TIME | HKT_SKIP_CALLER);
    int n;
    events = sum = 0;
    while ((n = r_batch(r, evs, 64)) > 0) {
      if (check) sum = hash_events(sum, evs, n, full);
      else
        for (int i = 0; i < n; i++) sum += evs[i].ptr ^ evs[i].size ^ evs[i].kind ^ evs[i].cls ^ evs[i].tid;
      events += (uint64_t)n;
    }
    if (n < 0) {
      fprintf(stderr, "decode_lean: %s\n", r_errmsg(r));
      r_close(r);
      return 1;
    }
    r_close(r);
    t[k] = cpu_now() - t0;
  }
  qsort(t, (size_t)rounds, sizeof *t, cmp_double);
  double med = t[rounds / 2];
  printf("events %llu sum %016llx best %.3f s (%.2f ns/event) median %.3f s (%.2f ns/event)\n",
         (unsigned long long)events, (unsigned long long)sum, t[0], t[0] * 1e9 / (double)(events ? events : 1),
         med, med * 1e9 / (double)(events ? events : 1));
  free(t);
  return 0;
}
