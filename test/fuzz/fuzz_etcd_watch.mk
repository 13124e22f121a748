# fuzz_etcd_watch: what turnout reads from etcd (the watch stream's framing and messages, base64), src/etcdwire.c.
FUZZ_SRC_etcd_watch := src/etcdwire.c src/store.c src/schema.c src/fileio.c src/tally.c
FUZZ_LIBS_etcd_watch := -lcjson -llmdb -lcrypto
