# fuzz_records: the store records' validation and normalisation (schema.c), and its time parser.
FUZZ_SRC_records := src/schema.c
FUZZ_LIBS_records := -lcjson
