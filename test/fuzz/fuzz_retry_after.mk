# fuzz_retry_after: the Retry-After parser, h1_retry_after_ms (delay-seconds and IMF-fixdates).
FUZZ_SRC_retry_after := src/h1.c
FUZZ_LIBS_retry_after := -lm
