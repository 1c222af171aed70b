/* recorder.h — pieces of the in-process recorder (recorder.c) that live in
 * their own files: module lists and stack capture. */
#ifndef HKT_RECORDER_H
#define HKT_RECORDER_H

#include "spool.h"

#define HKT_MOD_PATH 512

typedef struct hkt_modlist {
  hkt_module *mods;
  char (*paths)[HKT_MOD_PATH];
  uint32_t n, cap;
} hkt_modlist;

/* Append the loaded modules that are not in `known` (NULL: all). */
HKT_INTERNAL int hkt_modules_scan(hkt_modlist *out, const hkt_modlist *known);
/* dl_iterate_phdr's count of loads so far: cheap change detection. */
HKT_INTERNAL uint64_t hkt_modules_adds(void);
HKT_INTERNAL void hkt_modlist_free(hkt_modlist *l);
/* The list into the spool's module table (as many as fit), so that a
 * trace finished from the spool (`hakmem recover`, `hakmem record` after
 * a SIGKILL) has them in its header; and back. */
HKT_INTERNAL void hkt_modules_to_spool(hkt_spool *s, const hkt_modlist *l);
HKT_INTERNAL int hkt_modules_from_spool(const hkt_spool *s, hkt_modlist *out);

/* Load the unwinder (libgcc_s) for hkt_stack_capture: outside malloc, it
 * allocates. 0 if it is there. */
HKT_INTERNAL int hkt_stack_init(void);
/* Capture up to `depth` return addresses of the caller (skipping `skip`
 * frames) and intern them in the spool's stack table: the stack id, or 0
 * when the table is full or the unwinder is not loaded yet. No malloc. */
HKT_INTERNAL uint32_t hkt_stack_capture(hkt_spool *s, unsigned depth, unsigned skip);

#endif /* HKT_RECORDER_H */
