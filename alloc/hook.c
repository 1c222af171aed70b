/* hook.c — the recorder slot (see hook.h). */
#include "internal.h"

const hak_recorder *_hak_rec;
int _hak_instr;

void _hak_instr_update(void) {
  const hak_recorder *r = _hak_rec;
  _hak_instr = _hak_cfg.debug >= 2 || (r && (_hak_cfg.debug || r->same_depth)) ? 3 : r ? 2 : _hak_cfg.debug == 1;
}

void _hak_recorder_attach(const hak_recorder *r) {
  __atomic_store_n(&_hak_rec, r, __ATOMIC_RELEASE);
  _hak_instr_update();
}
