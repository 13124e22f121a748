# turnout - plain Makefile. `make`, `make SANITIZER=address,undefined`, `make test`, `make run`,
# `make install [PREFIX=/usr/local] [DESTDIR=]`, `make bench`, `make clean`.
VERSION   := 0.1.0
BUILD     ?= build
DEPS      := build/deps
CC        ?= cc
SANITIZER ?=

OPT       ?= -O2 -g
# CFLAGS/LDFLAGS from the command line are added to ours, never replace them.
override CFLAGS  := $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wmissing-prototypes -Wshadow \
             -MMD -MP -Iinclude -I$(DEPS)/include -DTURNOUT_VERSION='"$(VERSION)"' -pthread $(CFLAGS)
LDLIBS    := $(DEPS)/lib/libevhtp.a -levent -levent_pthreads -lcurl -lssl -lcrypto -lcjson -llmdb -lhiredis -lm -latomic -pthread
ifneq ($(SANITIZER),)
override CFLAGS  += -fsanitize=$(SANITIZER) -fno-omit-frame-pointer -fno-sanitize-recover=all
override LDFLAGS += -fsanitize=$(SANITIZER)
endif

OBJDIR    := $(BUILD)/obj$(if $(SANITIZER),-san)
LIB_SRC   := src/text.c src/smallmem.c src/config.c src/fileio.c src/jscan.c src/multipart.c src/schema.c src/store.c src/resolve.c src/tally.c src/health.c src/notify.c \
             src/log.c src/metrics.c src/reload.c \
             src/h1.c src/sse.c src/dialect/dialect.c src/dialect/openai_to_anthropic.c src/dialect/anthropic_to_openai.c src/upstream.c src/upcurl.c src/plane/intake.c src/plane/attempt.c src/plane/relay.c src/plane/reply.c src/plane/pace.c src/plane/spend.c src/usage.c src/ledger.c src/budget.c src/journal.c src/keeper.c src/events.c src/stats.c src/worker.c src/edge.c src/clientio.c src/tls.c src/auth.c src/control.c src/admin.c \
             src/residency.c src/ui.c src/etcd.c src/etcdwire.c src/shared.c
# the dashboard's files (ui/), compiled in as a generated source (tools/embed.c)
LIB_OBJ   := $(LIB_SRC:src/%.c=$(OBJDIR)/%.o) $(OBJDIR)/gen/ui_assets.o
UI_FILES  := $(sort $(patsubst ui/%,%,$(wildcard ui/*.html ui/*.js ui/*.css ui/*.svg)))
HOSTCC    ?= cc
UNIT_SRC  := $(wildcard test/unit/test_*.c)
UNIT_BIN  := $(UNIT_SRC:test/unit/%.c=$(BUILD)/unit/%)

PREFIX     ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR    ?= $(if $(filter /usr,$(PREFIX)),/lib,$(PREFIX)/lib)/systemd/system
DESTDIR    ?=

.PHONY: all deps test unit-bins run clean install bench fuzz fuzz-bins FORCE
all: $(BUILD)/turnout $(BUILD)/mockllm

deps: $(DEPS)/.stamp
$(DEPS)/.stamp: scripts/install-deps.sh $(wildcard scripts/patches/*.patch)
	bash scripts/install-deps.sh

$(OBJDIR)/%.o: src/%.c $(DEPS)/.stamp
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/turnout: $(LIB_OBJ) $(OBJDIR)/main.o
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# The dashboard: each file of ui/ gzipped once here (-n: no name or time, so
# the bytes depend on the content alone), then all of them, plain and
# gzipped, written into one C source by tools/embed.c, built for the host.
$(BUILD)/embed: tools/embed.c
	@mkdir -p $(@D)
	$(HOSTCC) -O2 -std=c11 -Wall -Wextra -Werror $< -o $@

$(BUILD)/gen/ui/%.gz: ui/%
	@mkdir -p $(@D)
	gzip -9 -n -c $< > $@

# (ui.list changes when a file is added or removed, so the source is remade then too)
$(BUILD)/gen/ui.list: FORCE
	@mkdir -p $(@D)
	@echo '$(UI_FILES)' | cmp -s - $@ || echo '$(UI_FILES)' > $@

$(BUILD)/gen/ui_assets.c: $(BUILD)/embed $(BUILD)/gen/ui.list $(UI_FILES:%=ui/%) $(UI_FILES:%=$(BUILD)/gen/ui/%.gz)
	$(BUILD)/embed $@ ui $(BUILD)/gen/ui $(UI_FILES)

$(OBJDIR)/gen/ui_assets.o: $(BUILD)/gen/ui_assets.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/mockllm: src/mockllm.c $(DEPS)/.stamp
	$(CC) $(CFLAGS) $(LDFLAGS) $< -levent -lcjson -o $@

# Unit tests include the module under test; each is its own program.
$(BUILD)/unit/%: test/unit/%.c $(LIB_OBJ)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itest/unit $(LDFLAGS) $< $(filter-out %/$(patsubst test_%,%,$*).o,$(LIB_OBJ)) $(LDLIBS) -o $@

# Resolution micro-benchmark (bench/resolve.sh runs it).
$(BUILD)/bench_resolve: bench/resolve.c $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) $< $(LIB_OBJ) $(LDLIBS) -o $@

# `make test` builds everything under ASan+UBSan and runs the unit and integration suites
# (plus the optimised build, which the memory tests measure).
test:
	bash scripts/install-deps.sh
	$(MAKE) all
	$(MAKE) BUILD=build/san SANITIZER=address,undefined OPT="-O1 -g" all unit-bins
	bash scripts/run-tests.sh build/san
	$(MAKE) fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS)

unit-bins: $(UNIT_BIN)

# libFuzzer drivers, built with clang: test/fuzz/fuzz_NAME.c, and beside it
# fuzz_NAME.mk setting FUZZ_SRC_NAME (the project sources it drives, built
# instrumented with it), FUZZ_LIBS_NAME and FUZZ_CFLAGS_NAME; its seeds are
# in test/fuzz/corpus/NAME. `make fuzz` runs each for FUZZ_SECONDS (what it
# learns stays in build/fuzz/corpus-NAME); a finding fails it.
FUZZ_SECONDS ?= 60
TEST_FUZZ_SECONDS ?= 30
FUZZ_NAMES  := $(patsubst test/fuzz/fuzz_%.c,%,$(wildcard test/fuzz/fuzz_*.c))
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Iinclude -I$(DEPS)/include -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=all
include $(wildcard test/fuzz/fuzz_*.mk)

.SECONDEXPANSION:
$(BUILD)/fuzz/fuzz_%: test/fuzz/fuzz_%.c $$(FUZZ_SRC_$$*) $(wildcard include/*.h) $(DEPS)/.stamp
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(FUZZ_CFLAGS_$*) $< $(FUZZ_SRC_$*) $(FUZZ_LIBS_$*) -o $@

fuzz-bins: $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)

fuzz: fuzz-bins
	bash scripts/run-fuzz.sh $(BUILD)/fuzz $(FUZZ_SECONDS) $(FUZZ_NAMES)

# turnout against an nginx reverse proxy on the same nginx upstream (bench/Makefile).
bench: all
	$(MAKE) -C bench

run: all
	bash scripts/run-demo.sh $(BUILD)

# The binary, the systemd unit (paths filled in), the man page, and the
# production example config unless one is already there.
install: all
	install -Dm755 $(BUILD)/turnout $(DESTDIR)$(PREFIX)/sbin/turnout
	install -Dm644 docs/turnout.8 $(DESTDIR)$(PREFIX)/share/man/man8/turnout.8
	mkdir -p $(DESTDIR)$(UNITDIR)
	sed -e 's|@SBINDIR@|$(PREFIX)/sbin|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' etc/turnout.service \
	    > $(DESTDIR)$(UNITDIR)/turnout.service
	chmod 644 $(DESTDIR)$(UNITDIR)/turnout.service
	test -e $(DESTDIR)$(SYSCONFDIR)/turnout/turnout.json || \
	    install -Dm640 etc/turnout.json $(DESTDIR)$(SYSCONFDIR)/turnout/turnout.json

clean:
	rm -rf $(BUILD)/obj $(BUILD)/obj-san $(BUILD)/turnout $(BUILD)/mockllm $(BUILD)/unit $(BUILD)/san \
	       $(BUILD)/gen $(BUILD)/embed

-include $(wildcard $(OBJDIR)/*.d $(OBJDIR)/*/*.d)
