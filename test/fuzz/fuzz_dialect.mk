# fuzz_dialect: both dialect translations, their four steps each.
FUZZ_SRC_dialect := src/dialect/dialect.c src/dialect/openai_to_anthropic.c src/dialect/anthropic_to_openai.c \
                    src/sse.c src/jscan.c src/text.c
FUZZ_LIBS_dialect := -lcjson -levent
