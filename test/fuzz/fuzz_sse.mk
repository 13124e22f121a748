# fuzz_sse: server-sent event boundaries (sse_whole, sse_first) and fields (sse_event), whole and in pieces.
FUZZ_SRC_sse := src/sse.c
FUZZ_LIBS_sse :=
