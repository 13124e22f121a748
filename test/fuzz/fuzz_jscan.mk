# fuzz_jscan: the request-body scanner (validation, recorded fields, walks, quoting, UTF-8 cleaning).
FUZZ_SRC_jscan := src/jscan.c
FUZZ_LIBS_jscan :=
