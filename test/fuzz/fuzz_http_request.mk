# fuzz_http_request: libevhtp's request parser (patched: scripts/patches), run as evhtp runs it, with edge.c's header rules.
FUZZ_SRC_http_request := $(DEPS)/src/libevhtp-1.2.18/parser.c
FUZZ_CFLAGS_http_request := -I$(DEPS)/src/libevhtp-1.2.18/include
FUZZ_LIBS_http_request :=
