# fuzz_usage: token counts read from upstream answers and stream events, and their cost.
FUZZ_SRC_usage := src/usage.c src/jscan.c src/sse.c
FUZZ_LIBS_usage := -lm
