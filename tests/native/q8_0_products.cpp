// Q8_0 matrix products through ggml's CPU backend, twice: with the weights in a plain CPU buffer
// (ggml's own Q8_0 path) and in the CPU_REPACK buffer (the project's AVX512-VNNI layout, where the
// CPU has it), each against a scalar reference computed here from the same quantized values.
// Prints one JSON object; tests/test_q8_0_repack.py builds and judges it.
//
// usage: q8_0_products ROWS COLS TOKENS THREADS SEED

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

struct rng {
    uint64_t state;
    float next() {  // roughly N(0, 1): a sum of four uniforms, centred and scaled
        float sum = 0.0f;
        for (int i = 0; i < 4; i++) {
            state = state * 6364136223846793005ULL + 1442695040888963407ULL;
            sum += (float) (state >> 40) / (float) (1ULL << 24);
        }
        return (sum - 2.0f) * 1.7320508f;
    }
};

// Q8_0's values for a row, as both of ggml's x86 quantizers make them: scale amax/127, rounded to
// nearest even. The scale is returned in fp32; ggml's own path stores it as fp16.
void quantize_reference(const float * x, int64_t k, std::vector<int8_t> & q, std::vector<float> & d) {
    for (int64_t b = 0; b < k / 32; b++) {
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) {
            amax = std::fmax(amax, std::fabs(x[b * 32 + i]));
        }
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        d.push_back(amax / 127.0f);
        for (int i = 0; i < 32; i++) {
            q.push_back((int8_t) std::nearbyint(x[b * 32 + i] * id));
        }
    }
}

ggml_backend_buffer_type_t repack_buffer_type(ggml_backend_t backend) {
    ggml_backend_dev_t dev = ggml_backend_get_device(backend);
    auto get_extra = (ggml_backend_dev_get_extra_bufts_t) ggml_backend_reg_get_proc_address(
        ggml_backend_dev_backend_reg(dev), "ggml_backend_dev_get_extra_bufts");
    for (ggml_backend_buffer_type_t * buft = get_extra ? get_extra(dev) : nullptr; buft && *buft; buft++) {
        if (strcmp(ggml_backend_buft_name(*buft), "CPU_REPACK") == 0) {
            return *buft;
        }
    }
    return nullptr;
}

// dst[t * rows + r] = row r of the weights times token t's activations
std::vector<float> product(ggml_backend_t backend, ggml_backend_buffer_type_t weights_buft, const void * q8_0,
                           const std::vector<float> & x, int64_t rows, int64_t cols, int64_t tokens, bool & supported) {
    ggml_init_params params = { 3 * ggml_tensor_overhead() + ggml_graph_overhead(), nullptr, true };
    ggml_context * ctx = ggml_init(params);
    ggml_tensor * w = ggml_new_tensor_2d(ctx, GGML_TYPE_Q8_0, cols, rows);
    ggml_tensor * a = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, cols, tokens);
    ggml_tensor * out = ggml_mul_mat(ctx, w, a);
    ggml_cgraph * graph = ggml_new_graph(ctx);
    ggml_build_forward_expand(graph, out);

    ggml_backend_buffer_t wbuf = ggml_backend_buft_alloc_buffer(weights_buft, ggml_backend_buft_get_alloc_size(weights_buft, w));
    ggml_backend_tensor_alloc(wbuf, w, ggml_backend_buffer_get_base(wbuf));
    ggml_backend_tensor_set(w, q8_0, 0, ggml_nbytes(w));
    supported = ggml_backend_supports_op(backend, out);

    ggml_gallocr_t galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend));
    ggml_gallocr_alloc_graph(galloc, graph);
    ggml_backend_tensor_set(a, x.data(), 0, ggml_nbytes(a));
    ggml_backend_graph_compute(backend, graph);

    std::vector<float> result(rows * tokens);
    ggml_backend_tensor_get(out, result.data(), 0, ggml_nbytes(out));
    ggml_gallocr_free(galloc);
    ggml_backend_buffer_free(wbuf);
    ggml_free(ctx);
    return result;
}

// the largest |got - want| over the largest |want|
double relative_error(const std::vector<float> & got, const std::vector<double> & want) {
    double err = 0.0, scale = 0.0;
    for (size_t i = 0; i < want.size(); i++) {
        err = std::fmax(err, std::fabs(got[i] - want[i]));
        scale = std::fmax(scale, std::fabs(want[i]));
    }
    return err / scale;
}

}  // namespace

int main(int argc, char ** argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s ROWS COLS TOKENS THREADS SEED\n", argv[0]);
        return 2;
    }
    const int64_t rows = atoll(argv[1]), cols = atoll(argv[2]), tokens = atoll(argv[3]);
    const int threads = atoi(argv[4]);
    rng gen = { (uint64_t) atoll(argv[5]) };

    std::vector<float> w(rows * cols), x(tokens * cols);
    for (float & v : w) v = gen.next() * 0.05f;
    for (float & v : x) v = gen.next();
    std::vector<uint8_t> q8_0(ggml_row_size(GGML_TYPE_Q8_0, cols) * rows);
    ggml_quantize_chunk(GGML_TYPE_Q8_0, w.data(), q8_0.data(), 0, rows, cols, nullptr);

    // the reference: the file's own weight values and scales, the activations quantized as above
    std::vector<float> wf(rows * cols);
    ggml_get_type_traits(GGML_TYPE_Q8_0)->to_float(q8_0.data(), wf.data(), rows * cols);
    std::vector<int8_t> xq;
    std::vector<float> xd;
    for (int64_t t = 0; t < tokens; t++) {
        quantize_reference(x.data() + t * cols, cols, xq, xd);
    }
    std::vector<double> want(rows * tokens, 0.0);
    for (int64_t t = 0; t < tokens; t++) {
        for (int64_t r = 0; r < rows; r++) {
            double sum = 0.0;
            for (int64_t k = 0; k < cols; k++) {
                sum += (double) wf[r * cols + k] * xd[(t * cols + k) / 32] * xq[t * cols + k];
            }
            want[t * rows + r] = sum;
        }
    }

    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, threads);
    bool plain_supported = false, repack_supported = false;
    const std::vector<float> plain = product(backend, ggml_backend_cpu_buffer_type(), q8_0.data(), x, rows, cols, tokens, plain_supported);
    ggml_backend_buffer_type_t repack = ggml_cpu_has_avx512_vnni() ? repack_buffer_type(backend) : nullptr;

    printf("{\"avx512_vnni\": %s, \"plain_error\": %.3e", ggml_cpu_has_avx512_vnni() ? "true" : "false",
           relative_error(plain, want));
    if (repack) {
        const std::vector<float> packed = product(backend, repack, q8_0.data(), x, rows, cols, tokens, repack_supported);
        double diff = 0.0, scale = 0.0;
        for (size_t i = 0; i < plain.size(); i++) {
            diff = std::fmax(diff, std::fabs(packed[i] - plain[i]));
            scale = std::fmax(scale, std::fabs(plain[i]));
        }
        printf(", \"repack_supported\": %s, \"repack_error\": %.3e, \"repack_vs_plain\": %.3e",
               repack_supported ? "true" : "false", relative_error(packed, want), diff / scale);
    }
    printf("}\n");
    ggml_backend_free(backend);
    return 0;
}
