# fuzz_multipart: the boundary of a multipart Content-Type, the model field and the field names of its body.
FUZZ_SRC_multipart := src/multipart.c
FUZZ_LIBS_multipart :=
