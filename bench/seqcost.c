/* seqcost — what ordering recorded events costs on this machine, and
 * whether its TSC could order them instead.
 *
 * The recorder gives every event a seq from one global counter (a lock
 * xadd): one total order, exact across threads, but every event of every
 * thread writes the same cache line. Part 1 times an event's ordering step
 * alone, each thread writing 32-byte records to its own buffer: the global
 * counter, a plain rdtsc, and lfence+rdtsc, on 1 and 2 threads.
 *
 * A TSC stamp shares no line, but orders events only if the TSCs of all
 * cores agree closely enough that an effect seen by another thread always
 * carries a later stamp. Part 2 checks that directly: two threads hand a
 * token back and forth, each stamps (rdtscp, after the load) when it sees
 * the token and (rdtsc, before the store) when it passes it on; a seen
 * stamp not later than the passed one is a violation. It prints the
 * violations and the smallest margin seen (the hand-off's latency, in TSC
 * ticks): a positive margin is the room any skew between cores must fit
 * in. One run says nothing of other machines (a VM can migrate).
 *
 * usage: seqcost [-n EVENTS]   (default 10 M per thread; part 2 uses N / 5) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <x86intrin.h>

enum { XADD, RDTSC, LFENCE_RDTSC, NMODES };
static const char *mode_name[NMODES] = {"global seq (lock xadd)", "rdtsc", "lfence; rdtsc"};

static _Alignas(64) _Atomic uint64_t seq;
static long nev = 10000000;
static int mode;

typedef struct { uint64_t stamp, a, b, c; } rec;   /* 32 bytes */
#define RING (1u << 15)                             /* 1 MiB per thread: stays in L2/L3 */

static double cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double spent[2];   /* each emitter's own CPU time */

static void *emitter(void *arg) {
  rec *buf = aligned_alloc(64, RING * sizeof(rec));
  if (!buf) return NULL;
  memset(buf, 0, RING * sizeof(rec));
  uint64_t id = (uintptr_t)arg;
  double t0 = cpu_s();
  for (long i = 0; i < nev; i++) {
    uint64_t s;
    if (mode == XADD) s = __atomic_fetch_add(&seq, 1, __ATOMIC_ACQ_REL);
    else if (mode == RDTSC) s = __rdtsc();
    else { _mm_lfence(); s = __rdtsc(); }
    rec *r = &buf[i & (RING - 1)];
    r->a = (uint64_t)i;
    r->b = id;
    r->c = s ^ (uint64_t)i;
    __atomic_store_n(&r->stamp, s, __ATOMIC_RELEASE);
  }
  spent[id] = cpu_s() - t0;
  free(buf);
  return NULL;
}

/* CPU ns per event of an emitting thread, `nth` of them at once (on a
 * busy machine two may not run at the same time, and then do not contend:
 * run it on a quiet one). */
static double run_emitters(int nth) {
  pthread_t th[2];
  for (int i = 0; i < nth; i++) pthread_create(&th[i], NULL, emitter, (void *)(uintptr_t)i);
  for (int i = 0; i < nth; i++) pthread_join(th[i], NULL);
  double sum = 0;
  for (int i = 0; i < nth; i++) sum += spent[i];
  return sum / nth * 1e9 / (double)nev;
}

/* ---- part 2: the token ---- */
static _Alignas(64) _Atomic uint64_t token = 1;   /* stamp << 1 | the thread that passed it */
static long hand_offs, violations[2];
static int64_t min_margin[2] = {INT64_MAX, INT64_MAX};

static void *passer(void *arg) {
  uint64_t me = (uintptr_t)arg;
  for (long i = 0; i < hand_offs; i++) {
    uint64_t v;
    while (((v = __atomic_load_n(&token, __ATOMIC_ACQUIRE)) & 1) == me) __builtin_ia32_pause();
    unsigned aux;
    uint64_t seen = __rdtscp(&aux);   /* waits for the load before it */
    int64_t margin = (int64_t)(seen - (v >> 1));
    if (i && margin <= 0) violations[me]++;   /* the first token carries no stamp */
    if (i && margin < min_margin[me]) min_margin[me] = margin;
    uint64_t passed = __rdtsc();      /* retires before the store that publishes it */
    __atomic_store_n(&token, passed << 1 | me, __ATOMIC_RELEASE);
  }
  return NULL;
}

int main(int argc, char **argv) {
  int c;
  while ((c = getopt(argc, argv, "n:")) != -1) {
    if (c != 'n') { fprintf(stderr, "usage: %s [-n EVENTS]\n", argv[0]); return 2; }
    nev = atol(optarg);
    if (nev < 1000) nev = 1000;
  }
  printf("ordering step per event (CPU ns of an emitting thread; 32-byte records to a private ring):\n");
  printf("  %-24s %10s %10s\n", "", "1 thread", "2 threads");
  for (mode = 0; mode < NMODES; mode++) {
    double one = run_emitters(1), two = run_emitters(2);
    printf("  %-24s %10.1f %10.1f\n", mode_name[mode], one, two);
  }
  hand_offs = nev / 5;
  pthread_t a, b;
  pthread_create(&a, NULL, passer, (void *)0);
  pthread_create(&b, NULL, passer, (void *)1);
  pthread_join(a, NULL);
  pthread_join(b, NULL);
  printf("TSC across threads: %ld hand-offs, %ld violations, smallest margin %lld ticks\n", 2 * hand_offs,
         violations[0] + violations[1],
         (long long)(min_margin[0] < min_margin[1] ? min_margin[0] : min_margin[1]));
  return violations[0] + violations[1] ? 1 : 0;
}
