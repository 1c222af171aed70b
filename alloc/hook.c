/* hook.c — the recorder slot (see hook.h). */
#include "internal.h"

const hak_recorder *_hak_rec;

void _hak_recorder_attach(const hak_recorder *r) {
  __atomic_store_n(&_hak_rec, r, __ATOMIC_RELEASE);
}
