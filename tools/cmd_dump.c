/* cmd_dump.c — `hakmem dump FILE [--json] [--tid T] [--ptr ADDR] [--from SEQ]
 * [--to SEQ] [--kind K,...]`: events as aligned text or JSON lines.
 *
 * Each kind's fields are named by one table (field_table), so text and JSON
 * say the same thing. --ptr follows one address through the trace in O(1)
 * memory: the block that holds it (alloc, realloc, free, remote push,
 * detections) and the SuperSlab or large mapping that held the block. */
#include <getopt.h>
#include <inttypes.h>

#include "cli.h"

/* ---- what each kind's generic fields mean --------------------------------- */

enum fmt { F_HEX, F_DEC, F_CLS, F_TID, F_FN, F_DET, F_END, F_FROM, F_STR, F_BID };
enum src { S_PTR, S_SIZE, S_AUX, S_AUX2, S_AUX3, S_CLS, S_FN, S_STR, S_BID };
typedef struct field { const char *name; unsigned char src, fmt; } field;
#define MAX_FIELDS 6

static const field field_table[HKT_EV__COUNT][MAX_FIELDS] = {
  [HKT_EV_MALLOC]        = {{"ptr", S_PTR, F_HEX}, {"size", S_SIZE, F_DEC}, {"cls", S_CLS, F_CLS}},
  [HKT_EV_CALLOC]        = {{"ptr", S_PTR, F_HEX}, {"size", S_SIZE, F_DEC}, {"count", S_AUX, F_DEC}, {"cls", S_CLS, F_CLS}},
  [HKT_EV_REALLOC]       = {{"ptr", S_PTR, F_HEX}, {"old", S_AUX, F_HEX}, {"size", S_SIZE, F_DEC}, {"cls", S_CLS, F_CLS}, {"fn", S_FN, F_FN}},
  [HKT_EV_ALIGNED]       = {{"ptr", S_PTR, F_HEX}, {"size", S_SIZE, F_DEC}, {"align", S_AUX, F_DEC}, {"cls", S_CLS, F_CLS}, {"fn", S_FN, F_FN}},
  [HKT_EV_FREE]          = {{"ptr", S_PTR, F_HEX}, {"cls", S_CLS, F_CLS}},
  [HKT_EV_THREAD_START]  = {{"os_tid", S_AUX, F_DEC}},
  [HKT_EV_THREAD_EXIT]   = {{0}},
  [HKT_EV_SS_REGISTER]   = {{"base", S_PTR, F_HEX}, {"size", S_SIZE, F_DEC}, {"cls", S_CLS, F_CLS}, {"owner", S_AUX, F_TID}, {"id", S_AUX2, F_DEC}},
  [HKT_EV_SS_UNREGISTER] = {{"base", S_PTR, F_HEX}, {"size", S_SIZE, F_DEC}, {"cls", S_CLS, F_CLS}, {"owner", S_AUX, F_TID}, {"id", S_AUX2, F_DEC}, {"live", S_AUX3, F_DEC}},
  [HKT_EV_REMOTE_PUSH]   = {{"ptr", S_PTR, F_HEX}, {"ss", S_AUX, F_HEX}, {"owner", S_AUX2, F_TID}, {"cls", S_CLS, F_CLS}},
  [HKT_EV_REMOTE_DRAIN]  = {{"ss", S_AUX, F_HEX}, {"blocks", S_SIZE, F_DEC}, {"cls", S_CLS, F_CLS}},
  [HKT_EV_CACHE_REFILL]  = {{"blocks", S_SIZE, F_DEC}, {"cls", S_CLS, F_CLS}, {"ss", S_AUX, F_HEX}, {"drained", S_AUX2, F_DEC}},
  [HKT_EV_CACHE_FLUSH]   = {{"blocks", S_SIZE, F_DEC}, {"cls", S_CLS, F_CLS}},
  [HKT_EV_SS_ADOPT]      = {{"base", S_PTR, F_HEX}, {"cls", S_CLS, F_CLS}, {"id", S_AUX2, F_DEC}, {"from", S_FN, F_FROM}},
  [HKT_EV_SS_ABANDON]    = {{"base", S_PTR, F_HEX}, {"cls", S_CLS, F_CLS}},
  [HKT_EV_LARGE_MAP]     = {{"ptr", S_PTR, F_HEX}, {"size", S_SIZE, F_DEC}},
  [HKT_EV_LARGE_UNMAP]   = {{"ptr", S_PTR, F_HEX}, {"size", S_SIZE, F_DEC}},
  [HKT_EV_MODULE_LOAD]   = {{"base", S_PTR, F_HEX}, {"size", S_SIZE, F_DEC}, {"path", S_STR, F_STR}, {"build_id", S_BID, F_BID}},
  [HKT_EV_MARK]          = {{"label", S_STR, F_STR}},
  [HKT_EV_DETECTION]     = {{"what", S_FN, F_DET}, {"ptr", S_PTR, F_HEX}, {"ss", S_AUX, F_HEX}, {"extra", S_AUX2, F_DEC}},
  [HKT_EV_END]           = {{"how", S_FN, F_END}, {"code", S_AUX, F_DEC}},
  [HKT_EV_SS_EMPTY]      = {{"base", S_PTR, F_HEX}, {"cls", S_CLS, F_CLS}, {"id", S_AUX2, F_DEC}},
};

static int is_call(unsigned kind) { return kind >= HKT_EV_MALLOC && kind <= HKT_EV_FREE; }
static int is_alloc(unsigned kind) { return kind >= HKT_EV_MALLOC && kind <= HKT_EV_ALIGNED; }

static uint64_t field_value(const hkt_event *ev, unsigned src) {
  switch (src) {
  case S_PTR: return ev->ptr;
  case S_SIZE: return ev->size;
  case S_AUX: return ev->aux;
  case S_AUX2: return ev->aux2;
  case S_AUX3: return ev->aux3;
  case S_CLS: return ev->cls;
  case S_FN: return ev->fn;
  default: return 0;
  }
}

static const char *safe(const char *s) { return s ? s : "?"; }

/* One field as "name=value" (text) or "\"name\":value" (JSON). */
static void print_field(const hkt_event *ev, const field *f, int json) {
  uint64_t v = field_value(ev, f->src);
  if (json) printf(",\"%s\":", f->name);
  else printf(" %s=", f->name);
  switch (f->fmt) {
  case F_HEX:
    if (json) cli_json_addr(stdout, v);
    else printf("0x%" PRIx64, v);
    break;
  case F_CLS:
    if (v == HKT_NO_CLASS) printf(json ? "null" : "-");
    else printf("%" PRIu64, v);
    break;
  case F_TID:
    if (v == 0xffffffffu) printf(json ? "null" : "-");
    else printf(json ? "%" PRIu64 : "t%" PRIu64, v);
    break;
  case F_FN: case F_DET: case F_END: case F_FROM: {
    const char *n = f->fmt == F_FN ? safe(hkt_fn_name((unsigned)v))
                  : f->fmt == F_DET ? safe(hkt_detect_name((unsigned)v))
                  : f->fmt == F_END ? safe(hkt_end_name((unsigned)v))
                  : v == 0 ? "shared_pool" : "empty_cache";   /* where an adopted SuperSlab came from */
    if (json) cli_json_str(stdout, n);
    else fputs(n, stdout);
    break;
  }
  case F_STR:
    if (json) cli_json_str(stdout, ev->str ? ev->str : "");
    else cli_text_str(stdout, ev->str);
    break;
  case F_BID:
    if (json) putchar('"');
    for (uint32_t i = 0; ev->bid && i < ev->bid_len; i++) printf("%02x", ev->bid[i]);
    if (json) putchar('"');
    else if (!ev->bid_len) putchar('-');
    break;
  default:
    printf("%" PRIu64, v);
  }
}

/* The generic fields that say something the kind's table does not:
 * errno of a failed allocation, the count of reallocarray. */
static void print_extras(const hkt_event *ev, int json) {
  const char *sep = json ? "," : " ";
  const char *eq = json ? "\":" : "=";
  const char *q = json ? "\"" : "";
  if (ev->kind == HKT_EV_REALLOC && ev->fn == HKT_FN_REALLOCARRAY)
    printf("%s%scount%s%" PRIu64, sep, q, eq, ev->aux2);
  else if (is_alloc(ev->kind) && ev->ptr == 0 && ev->aux2)
    printf("%s%serrno%s%" PRIu64, sep, q, eq, ev->aux2);
  if (is_call(ev->kind) && ev->caller) {
    if (json) { printf(",\"caller\":"); cli_json_addr(stdout, ev->caller); }
    else printf(" caller=0x%" PRIx64, ev->caller);
  }
  if (ev->stack_id) printf("%s%sstack%s%" PRIu32, sep, q, eq, ev->stack_id);
}

static void print_event(const hkt_event *ev, int json, const char *role) {
  const char *kind = ev->kind < HKT_EV__COUNT ? safe(hkt_kind_name(ev->kind)) : "unknown";
  const field *fields = ev->kind < HKT_EV__COUNT ? field_table[ev->kind] : field_table[0];
  if (json) {
    printf("{\"seq\":%" PRIu64 ",\"time_ns\":%" PRIu64 ",\"tid\":%" PRIu32 ",\"kind\":\"%s\"",
           ev->seq, ev->time_ns, ev->tid, kind);
    if (ev->kind >= HKT_EV__COUNT) printf(",\"kind_code\":%u", ev->kind);
  } else {
    printf("%10" PRIu64 " %6" PRIu64 ".%09" PRIu64 " t%-3" PRIu32 " %-13s", ev->seq,
           ev->time_ns / 1000000000u, ev->time_ns % 1000000000u, ev->tid, kind);
  }
  for (int i = 0; i < MAX_FIELDS && fields[i].name; i++) print_field(ev, &fields[i], json);
  print_extras(ev, json);
  if (role) {
    if (json) printf(",\"role\":\"%s\"", role);
    else printf("  [%s]", role);
  }
  fputs(json ? "}\n" : "\n", stdout);
}

/* ---- --ptr: following one address ------------------------------------------ */

typedef struct ptr_watch {
  uint64_t addr;
  uint64_t block, block_end;     /* the live block holding addr, 0 if none */
  uint64_t region, region_end;   /* the SuperSlab or large mapping holding it */
  uint64_t events;
  uint64_t last_alloc_seq, last_free_seq;
  int block_live, saw_alloc;
  uint64_t reg_seq, unreg_seq;   /* the region's register / unregister */
  int reg_large, unregistered;
} ptr_watch;

static int covers(uint64_t base, uint64_t size, uint64_t a) {
  return a >= base && a - base < (size ? size : 1);
}

/* Whether ev concerns w->addr, updating what w knows about its block and
 * region; *role says which of the two the event is about. */
static int watch_event(ptr_watch *w, const hkt_event *ev, const char **role) {
  uint64_t a = w->addr;
  *role = "block";
  switch (ev->kind) {
  case HKT_EV_MALLOC: case HKT_EV_CALLOC: case HKT_EV_ALIGNED: case HKT_EV_REALLOC: {
    uint64_t bytes = ev->kind == HKT_EV_CALLOC ? ev->size * ev->aux : ev->size;
    int old_is_ours = ev->kind == HKT_EV_REALLOC && ev->aux &&
                      (ev->aux == a || (w->block_live && ev->aux == w->block));
    int new_is_ours = ev->ptr && covers(ev->ptr, bytes, a);
    if (old_is_ours && (ev->ptr || ev->size == 0)) {   /* realloc moved or freed it */
      w->block_live = 0;
      w->last_free_seq = ev->seq;
    }
    if (new_is_ours) {
      w->block = ev->ptr;
      w->block_end = ev->ptr + (bytes ? bytes : 1);
      w->block_live = 1;
      w->saw_alloc = 1;
      w->last_alloc_seq = ev->seq;
    }
    return old_is_ours || new_is_ours;
  }
  case HKT_EV_FREE:   /* also a second free of the block: the history shows it */
    if (ev->ptr && (ev->ptr == a || (w->block && ev->ptr == w->block))) {
      if (w->block_live && ev->ptr == w->block) w->block_live = 0;
      w->last_free_seq = ev->seq;
      return 1;
    }
    return 0;
  case HKT_EV_REMOTE_PUSH:
    return ev->ptr == a || (w->block && ev->ptr == w->block);
  case HKT_EV_DETECTION:
    if (ev->ptr == a || (w->block && ev->ptr == w->block)) return 1;
    *role = "superslab";
    return w->region && ev->aux == w->region;
  case HKT_EV_SS_REGISTER: case HKT_EV_LARGE_MAP:
    *role = ev->kind == HKT_EV_LARGE_MAP ? "mapping" : "superslab";
    if (!covers(ev->ptr, ev->size, a)) return 0;
    w->region = ev->ptr;
    w->region_end = ev->ptr + ev->size;
    w->reg_seq = ev->seq;
    w->reg_large = ev->kind == HKT_EV_LARGE_MAP;
    w->unregistered = 0;
    return 1;
  case HKT_EV_SS_UNREGISTER: case HKT_EV_LARGE_UNMAP:
    *role = ev->kind == HKT_EV_LARGE_UNMAP ? "mapping" : "superslab";
    if (!w->region || ev->ptr != w->region) return 0;
    w->unregistered = 1;
    w->unreg_seq = ev->seq;
    return 1;
  case HKT_EV_SS_ADOPT: case HKT_EV_SS_ABANDON: case HKT_EV_SS_EMPTY:
    *role = "superslab";
    return w->region && ev->ptr == w->region;
  default:
    return 0;
  }
}

static void print_watch_summary(const ptr_watch *w) {
  printf("-- 0x%" PRIx64 ": %" PRIu64 " events;", w->addr, w->events);
  if (!w->saw_alloc) printf(" never allocated in this trace;");
  else if (w->block_live)
    printf(" in block 0x%" PRIx64 " (+%" PRIu64 "), live since seq %" PRIu64 ";", w->block,
           w->addr - w->block, w->last_alloc_seq);
  else
    printf(" last block 0x%" PRIx64 " freed at seq %" PRIu64 ";", w->block, w->last_free_seq);
  if (!w->region) printf(" no SuperSlab or mapping holds it\n");
  else {
    printf(" %s 0x%" PRIx64 " registered at seq %" PRIu64, w->reg_large ? "mapping" : "SuperSlab",
           w->region, w->reg_seq);
    if (w->unregistered) printf(", unregistered at seq %" PRIu64 "\n", w->unreg_seq);
    else printf(", still registered\n");
  }
}

/* ---- the command ------------------------------------------------------------ */

typedef struct dump_opts {
  int json;
  int has_tid, has_ptr;
  uint64_t tid, ptr, from, to;
  uint32_t kinds;               /* bitmask of enum hkt_kind, 0 = all */
} dump_opts;

static int parse_kinds(const char *list, uint32_t *mask) {
  char buf[256];
  if (strlen(list) >= sizeof buf) return -1;
  strcpy(buf, list);
  for (char *save = NULL, *k = strtok_r(buf, ",", &save); k; k = strtok_r(NULL, ",", &save)) {
    int kind = hkt_kind_from_name(k);
    if (kind <= 0 || kind >= HKT_EV__COUNT) return -1;
    *mask |= 1u << kind;
  }
  return *mask ? 0 : -1;
}

static int parse_args(int argc, char **argv, dump_opts *o, const char **path) {
  static const struct option opts[] = {
    {"json", no_argument, NULL, 'j'}, {"tid", required_argument, NULL, 't'},
    {"ptr", required_argument, NULL, 'p'}, {"from", required_argument, NULL, 'f'},
    {"to", required_argument, NULL, 'T'}, {"kind", required_argument, NULL, 'k'},
    {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
  };
  int c;
  char what[160];
  o->to = UINT64_MAX;
  optind = 0;
  while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
    uint64_t *dst = c == 't' ? &o->tid : c == 'p' ? &o->ptr : c == 'f' ? &o->from : c == 'T' ? &o->to : NULL;
    if (dst) {
      if (c == 't' && optarg[0] == 't') optarg++;   /* "t3", as dump prints it */
      if (cli_u64(optarg, dst)) {
        snprintf(what, sizeof what, "'%s' is not a number", optarg);
        return cli_usage("dump", what);
      }
      if (c == 't') o->has_tid = 1;
      if (c == 'p') o->has_ptr = 1;
    } else if (c == 'j') {
      o->json = 1;
    } else if (c == 'k') {
      if (parse_kinds(optarg, &o->kinds)) {
        snprintf(what, sizeof what, "'%s': unknown event kind (kinds: malloc, free, ss_register, ...)", optarg);
        return cli_usage("dump", what);
      }
    } else if (c == 'h') {
      return cli_usage("dump", "use 'hakmem help dump'");
    } else {
      return cli_bad_option("dump", c, argv, optind);
    }
  }
  if (argc - optind != 1) return cli_usage("dump", "expects one FILE");
  if (o->from > o->to) return cli_usage("dump", "--from is after --to");
  *path = argv[optind];
  return 0;
}

int cmd_dump(int argc, char **argv) {
  dump_opts o = {0};
  const char *path;
  int rc = parse_args(argc, argv, &o, &path);
  if (rc) return rc;

  hkt_reader *r;
  if (HKT_IS_ERR(cli_open_trace("dump", path, &r))) return CLI_EXIT_USAGE;
  ptr_watch w = {.addr = o.ptr};
  hkt_event ev;
  while ((rc = hkt_reader_next(r, &ev)) > 0) {
    const char *role = NULL;
    /* the watch sees every event, so it knows the block even before --from */
    if (o.has_ptr && !watch_event(&w, &ev, &role)) continue;
    if (ev.seq < o.from) continue;
    if (ev.seq > o.to) break;
    if (o.has_tid && ev.tid != o.tid) continue;
    if (o.kinds && (ev.kind >= 32 || !(o.kinds & (1u << ev.kind)))) continue;
    w.events++;
    print_event(&ev, o.json, role);
  }
  if (o.has_ptr && !o.json) print_watch_summary(&w);
  int status = cli_flush_stdout("dump");
  if (HKT_IS_ERR(rc)) {
    cli_err("dump", "%s", hkt_reader_errmsg(r));
    if (!status) status = CLI_EXIT_PROBLEM;
  }
  hkt_reader_close(r);
  return status;
}
