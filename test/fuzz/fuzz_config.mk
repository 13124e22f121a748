# fuzz_config: config_load on arbitrary file bytes. The driver #includes src/config.c (to check
# against its option table), so it is named here as a prerequisite only, not compiled again.
FUZZ_SRC_config := src/fileio.c src/tls.c
FUZZ_LIBS_config := -lcjson -lssl -lcrypto
$(BUILD)/fuzz/fuzz_config: src/config.c
