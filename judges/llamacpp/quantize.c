// quantize: encode float32 values with llama.cpp's own ggml (the libggml-base
// that node-llama-cpp ships), the path llama-quantize takes without an
// importance matrix. Used to produce formats/gguf/testdata/quant goldens.
//
//   cc -O0 -o /tmp/quantize quantize.c -ldl
//   /tmp/quantize LIBGGML_BASE.so TYPE N_PER_ROW IN.f32 OUT.bin
//
// TYPE is a ggml type number (1 F16, 2 Q4_0, 8 Q8_0, 30 BF16).
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start, int64_t nrows,
                                    int64_t n_per_row, const float *imatrix);
typedef void (*row_fn)(const float *, uint16_t *, int64_t);

int main(int argc, char **argv) {
	if (argc != 6) {
		fprintf(stderr, "usage: quantize LIBGGML_BASE TYPE N_PER_ROW IN.f32 OUT.bin\n");
		return 2;
	}
	void *lib = dlopen(argv[1], RTLD_NOW);
	if (!lib) {
		fprintf(stderr, "%s\n", dlerror());
		return 2;
	}
	int type = atoi(argv[2]);
	long n_per_row = atol(argv[3]);
	FILE *in = fopen(argv[4], "rb");
	if (!in) { perror(argv[4]); return 2; }
	fseek(in, 0, SEEK_END);
	long n = ftell(in) / 4;
	fseek(in, 0, SEEK_SET);
	float *x = malloc(n * 4);
	if (fread(x, 4, n, in) != (size_t)n) { perror("read"); return 2; }
	fclose(in);
	void *out = malloc(n * 4);
	size_t size;
	if (type == 1 || type == 30) {
		row_fn f = (row_fn)dlsym(lib, type == 1 ? "ggml_fp32_to_fp16_row" : "ggml_fp32_to_bf16_row");
		f(x, out, n);
		size = n * 2;
	} else {
		quantize_chunk_fn q = (quantize_chunk_fn)dlsym(lib, "ggml_quantize_chunk");
		size = q(type, x, out, 0, n / n_per_row, n_per_row, NULL);
	}
	FILE *o = fopen(argv[5], "wb");
	if (!o || fwrite(out, 1, size, o) != size) { perror(argv[5]); return 2; }
	fclose(o);
	return 0;
}
