// Philox-4x32-10 (Salmon et al., SC'11), the counter-based generator behind every random draw
// of fasa_fast. Each draw is a pure function of (seed, counter), so the reference, C++, CUDA
// and Triton backends produce the same numbers for the same draw, whatever their thread layout.
//
// Counter layout of sample_virtual_features (also in fasa_fast/ops/reference.py and
// kernels/philox.py):  (word0, word1, word2, word3) =
//   Bernoulli trial of class c:          (c, 0, 0, call)
//   rotation start of the compaction:    (0, 0, 1, call)
//   normals of replica j of class c:     (q, c, 2 + j, call), dims 4q .. 4q+3
// with key = (seed low 32 bits, seed high 32 bits) and `call` the 32-bit call counter.
#pragma once
#include <cstdint>
#include <cmath>

#if defined(__CUDACC__)
#define FASA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASA_HOST_DEVICE inline
#endif

namespace fasa_fast {

struct Philox4 {
  uint32_t x[4];
};

FASA_HOST_DEVICE void mulhilo32(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  hi = __umulhi(a, b);
  lo = a * b;
#else
  const uint64_t p = static_cast<uint64_t>(a) * b;
  hi = static_cast<uint32_t>(p >> 32);
  lo = static_cast<uint32_t>(p);
#endif
}

FASA_HOST_DEVICE Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                       uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo32(0xD2511F53u, c0, hi0, lo0);
    mulhilo32(0xCD9E8D57u, c2, hi1, lo1);
    const uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}

// Uniform in (0, 1] from 32 random bits, in float32 (never 0, so log() is finite).
FASA_HOST_DEVICE float uniform_open0(uint32_t bits) {
  return (static_cast<float>(bits) + 1.0f) * 2.3283064365386963e-10f;
}

// Box-Muller: two standard normals from two 32-bit draws.
FASA_HOST_DEVICE void box_muller(uint32_t a, uint32_t b, float& z0, float& z1) {
  const float radius = sqrtf(-2.0f * logf(uniform_open0(a)));
  const float theta = 6.2831853071795865f * uniform_open0(b);
  z0 = radius * cosf(theta);
  z1 = radius * sinf(theta);
}

// Bernoulli(p) decided in exact arithmetic: the same on every backend for the same bits.
FASA_HOST_DEVICE bool bernoulli_bits(uint32_t bits, float p) {
  return static_cast<double>(bits) < static_cast<double>(p) * 4294967296.0;
}

// Start of the cyclic compaction order, uniform over [0, C): floor(bits * C / 2^32).
FASA_HOST_DEVICE int64_t rotation_start(uint32_t bits, int64_t num_classes) {
  return static_cast<int64_t>((static_cast<uint64_t>(bits) * static_cast<uint64_t>(num_classes)) >> 32);
}

}  // namespace fasa_fast
