# fuzz_upstream_response: a response read by turnout's own upstream client; the driver includes src/upstream.c.
FUZZ_SRC_upstream_response := src/h1.c src/text.c
FUZZ_LIBS_upstream_response := -levent
$(BUILD)/fuzz/fuzz_upstream_response: src/upstream.c
