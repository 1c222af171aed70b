# hakmem — one Makefile for the allocator, the recorder, the tools, tests and benchmarks.
#
#   make            build/lib/libhakmem.{so,a}, build/bin/hakmem (installs nothing)
#   make check      install missing Debian packages, build, run every test
#   make demo       install, build, run the main job on an example
#   make bench      install, build, run the side-by-side benchmarks
#   make asan|ubsan|tsan   the suite under a sanitizer (its own build dir)
#   make install PREFIX=/usr/local
#
# Sources are picked up by directory, so a new module is a new file, not a
# Makefile edit:  alloc/*.c trace/*.c -> the library;  tools/ replay/
# analyze/ -> the command;  tests/test_*.c -> one cmocka binary each.

CC      ?= cc
BUILD   ?= build
PREFIX  ?= /usr/local
SAN     ?=
OPT     ?= -O2
V       ?= 0

# -mbranches-within-32B-boundaries: Skylake-era cores (these Xeons) slow
# down a jump that crosses or ends on a 32-byte boundary; free's fast path
# had one (mixed +4%, medians of 9 runs).
CFLAGS_BASE := -std=gnu11 $(OPT) -g -fPIC -Wall -Wextra -Wno-unused-parameter \
               -fvisibility=hidden -pthread -Iinclude -Ialloc -Itrace -D_GNU_SOURCE \
               -Wa,-mbranches-within-32B-boundaries
ifneq ($(SAN),)
CFLAGS_BASE += -fsanitize=$(SAN) -fno-omit-frame-pointer -DHAK_SANITIZER=1
LDSAN       := -fsanitize=$(SAN)
endif
CFLAGS  += $(CFLAGS_BASE)
LDLIBS_CORE := -lpthread -ldl
LDLIBS_TOOL := $(LDLIBS_CORE) -lzstd -ldw -lelf -lbabeltrace2 -lm

SHIM_SRC  := alloc/shim.c
CORE_SRC  := $(filter-out $(SHIM_SRC),$(wildcard alloc/*.c)) $(wildcard trace/*.c)
TOOL_SRC  := $(wildcard tools/*.c replay/*.c analyze/*.c)
TEST_SRC  := $(wildcard tests/test_*.c)
EX_SRC    := $(wildcard examples/*.c)
BENCH_SRC := $(wildcard bench/*.c)
LTTNG_SRC := $(wildcard trace/lttng/*.c)

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))
CORE_OBJ := $(call obj,$(CORE_SRC))
SHIM_OBJ := $(call obj,$(SHIM_SRC))
TOOL_OBJ := $(call obj,$(TOOL_SRC))

LIB_SO   := $(BUILD)/lib/libhakmem.so
LIB_A    := $(BUILD)/lib/libhakmem.a
CORE_A   := $(BUILD)/lib/libhakmem_core.a
HAKMEM   := $(BUILD)/bin/hakmem
TESTS    := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/examples/%,$(EX_SRC))
BENCHES  := $(patsubst bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
LTTNG_SO := $(if $(LTTNG_SRC),$(BUILD)/lib/libhakmem-lttng.so)
# The allocator with its recording hooks compiled out: make bench's baseline
# for what one predictable branch per call costs.
NOHOOK_SO := $(BUILD)/lib/libhakmem-nohook.so
NOHOOK_OBJ := $(patsubst %.c,$(BUILD)/obj-nohook/%.o,$(CORE_SRC) $(SHIM_SRC))

.PHONY: all lib tools tests examples benches check demo bench deps install \
        asan ubsan tsan fuzz clean
all: lib tools examples $(LTTNG_SO)
lib: $(LIB_SO) $(LIB_A) $(CORE_A) $(BUILD)/hakmem.pc
tools: $(HAKMEM)
tests: $(TESTS) tools lib examples $(LTTNG_SO)
examples: $(EXAMPLES)
benches: $(BENCHES)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(LIB_SO): $(CORE_OBJ) $(SHIM_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libhakmem.so $(LDSAN) -o $@ $^ $(LDLIBS_CORE)
$(BUILD)/obj-nohook/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DHAK_NO_HOOKS -c $< -o $@
$(NOHOOK_SO): $(NOHOOK_OBJ)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,libhakmem.so $(LDSAN) -o $@ $^ $(LDLIBS_CORE)
$(LIB_A): $(CORE_OBJ) $(SHIM_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
# The core without the malloc-family symbols: what tools and tests link, so
# that hakmem's heap stays separate from the process's own malloc.
$(CORE_A): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(HAKMEM): $(TOOL_OBJ) $(CORE_A)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $(TOOL_OBJ) $(CORE_A) $(LDLIBS_TOOL)
$(BUILD)/tests/%: tests/%.c $(CORE_A) $(TOOL_OBJ) $(wildcard tests/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -Itools -o $@ $< $(filter-out $(BUILD)/obj/tools/main.o,$(TOOL_OBJ)) $(CORE_A) -lcmocka $(LDLIBS_TOOL)
$(BUILD)/examples/%: examples/%.c
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -fno-omit-frame-pointer -pthread -Iinclude -o $@ $< $(LDSAN)
# reencode drives the trace writer itself: it links the core library.
$(BUILD)/bench/reencode: bench/reencode.c $(CORE_A)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDSAN) -o $@ $< $(CORE_A) $(LDLIBS_CORE)
$(BUILD)/bench/%: bench/%.c $(wildcard bench/*.h)
	@mkdir -p $(dir $@)
	$(CC) -O2 -g -Wall -Wextra -pthread -Iinclude -o $@ $< -lm
$(LTTNG_SO): $(LTTNG_SRC) $(wildcard trace/lttng/*.h) trace/modinfo.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itrace/lttng -shared -o $@ $(filter %.c,$^) -llttng-ust -ldl
$(BUILD)/hakmem.pc: tools/hakmem.pc.in
	@mkdir -p $(dir $@)
	sed -e 's|@PREFIX@|$(PREFIX)|g' $< > $@

deps:
	@bash tools/install-deps.sh

check: deps
	$(MAKE) tests
	bash tests/run.sh $(BUILD)

demo: deps
	$(MAKE) all
	bash examples/demo.sh $(BUILD)

bench: deps
	$(MAKE) lib tools benches $(NOHOOK_SO) $(LTTNG_SO)
	bash bench/run.sh $(BUILD)

fuzz: deps
	bash tests/fuzz/run.sh $(BUILD) 30

asan: deps
	$(MAKE) BUILD=build-asan SAN=address OPT=-O1 tests
	HAKMEM_TEST_SAN=address bash tests/run.sh build-asan
ubsan: deps
	$(MAKE) BUILD=build-ubsan SAN=undefined tests
	HAKMEM_TEST_SAN=undefined UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 bash tests/run.sh build-ubsan
tsan: deps
	$(MAKE) BUILD=build-tsan SAN=thread tests
	HAKMEM_TEST_SAN=thread bash tests/run.sh build-tsan

install: lib tools
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/hakmem \
	           $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(LIB_SO) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 $(LIB_A) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/hakmem.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 include/hakmem/trace.h $(DESTDIR)$(PREFIX)/include/hakmem/
	install -m 644 $(BUILD)/hakmem.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 755 $(HAKMEM) $(DESTDIR)$(PREFIX)/bin/
	$(if $(LTTNG_SO),install -m 755 $(LTTNG_SO) $(DESTDIR)$(PREFIX)/lib/)

clean:
	rm -rf build build-asan build-ubsan build-tsan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
