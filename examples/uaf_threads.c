/* uaf_threads.c — use after free across threads (producer/consumer).
 *
 * The producer queues messages; the consumer handles and frees them. The
 * producer remembers one urgent message to acknowledge later, and does so
 * after the consumer has already freed it: a write into freed memory from
 * another thread. Nothing crashes; the byte lands in whatever the block
 * has become by then.
 *
 *   HAKMEM_DEBUG=3 LD_PRELOAD=libhakmem.so ./uaf_threads */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MESSAGES 100000
#define URGENT   1000

struct msg {
  struct msg *next;
  long id;
  int acked;          /* offset 16: what the late acknowledgement writes */
  char text[36];
};

static struct msg *head, *tail;
static long consumed;
static int done;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

static void *consumer(void *arg) {
  long sum = 0;
  for (;;) {
    pthread_mutex_lock(&mu);
    while (!head && !done) pthread_cond_wait(&cv, &mu);
    struct msg *m = head;
    if (m) { head = m->next; if (!head) tail = NULL; }
    pthread_mutex_unlock(&mu);
    if (!m) break;
    sum += m->id + (long)strlen(m->text);
    free(m);
    pthread_mutex_lock(&mu);
    consumed++;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
  }
  *(long *)arg = sum;
  return NULL;
}

int main(void) {
  pthread_t t;
  long sum = 0;
  struct msg *urgent = NULL;
  pthread_create(&t, NULL, consumer, &sum);
  for (long i = 0; i < MESSAGES; i++) {
    struct msg *m = malloc(sizeof *m);
    if (!m) return 1;
    m->next = NULL;
    m->id = i;
    m->acked = 0;
    snprintf(m->text, sizeof m->text, "message %ld", i);
    if (i == URGENT) urgent = m;
    pthread_mutex_lock(&mu);
    if (tail) tail->next = m; else head = m;
    tail = m;
    pthread_cond_signal(&cv);
    /* Acknowledge the urgent message once the consumer is past it... */
    if (i == 2 * URGENT) {
      while (consumed <= URGENT) pthread_cond_wait(&cv, &mu);
      urgent->acked = 1;      /* ...but the consumer freed it: use after free */
    }
    pthread_mutex_unlock(&mu);
  }
  pthread_mutex_lock(&mu);
  done = 1;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
  pthread_join(t, NULL);
  printf("uaf_threads: %d messages, checksum %ld\n", MESSAGES, sum);
  return 0;
}
