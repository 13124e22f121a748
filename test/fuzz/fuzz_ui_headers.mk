# fuzz_ui_headers: the dashboard's Accept-Encoding and If-None-Match readers (src/ui.c, included by the driver).
FUZZ_SRC_ui_headers :=
FUZZ_LIBS_ui_headers := $(DEPS)/lib/libevhtp.a -levent -pthread
