// Kernel of fasa_fast::fisher_distance, shared verbatim by the CUDA build
// (fisher_distance_launch.cu, which launches it) and the host emulation of the tests
// (tests/cuda_emulation), which runs it with one host thread per CUDA thread.
//
// A 32 x 32 tile of class pairs per block, looping over D in shared-memory chunks; only tiles
// on or above the diagonal do work, and each writes its tile and the mirrored one. Nothing of
// size C x C x D is materialised.
//
// Included by exactly one translation unit of each binary, hence the anonymous namespace.
#pragma once
#include <cstdint>

#include "launch_geometry.h"

namespace fasa_fast {
namespace {

constexpr int kDChunk = 32;  // feature dims staged per step

__global__ void __launch_bounds__(kTile * kTile / kRowsPerThread)
    fisher_distance_kernel(const float* __restrict__ mean, const float* __restrict__ var,
                           float* __restrict__ out, int64_t n_classes, int64_t dim, float eps) {
  if (blockIdx.y > blockIdx.x) return;  // lower-triangle tiles are mirrored from upper ones
  __shared__ float mu_i[kTile][kDChunk + 1], var_i[kTile][kDChunk + 1];
  __shared__ float mu_j[kTile][kDChunk + 1], var_j[kTile][kDChunk + 1];
  const int64_t i0 = static_cast<int64_t>(blockIdx.y) * kTile;
  const int64_t j0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int tx = threadIdx.x, ty = threadIdx.y;  // tx: j in tile, ty: first i row
  const int tid = ty * kTile + tx;
  constexpr int kThreads = kTile * kTile / kRowsPerThread;
  float acc[kRowsPerThread] = {0.f};

  for (int64_t d0 = 0; d0 < dim; d0 += kDChunk) {
    for (int e = tid; e < kTile * kDChunk; e += kThreads) {
      const int r = e / kDChunk, k = e % kDChunk;
      const int64_t d = d0 + k;
      const int64_t gi = i0 + r, gj = j0 + r;
      const bool di = gi < n_classes && d < dim, dj = gj < n_classes && d < dim;
      mu_i[r][k] = di ? mean[gi * dim + d] : 0.f;
      var_i[r][k] = di ? var[gi * dim + d] : 1.f;
      mu_j[r][k] = dj ? mean[gj * dim + d] : 0.f;
      var_j[r][k] = dj ? var[gj * dim + d] : 1.f;
    }
    __syncthreads();
    const int kmax = dim - d0 < kDChunk ? static_cast<int>(dim - d0) : kDChunk;
    for (int k = 0; k < kmax; ++k) {
      const float mj = mu_j[tx][k], vj = var_j[tx][k];
#pragma unroll
      for (int q = 0; q < kRowsPerThread; ++q) {
        const int r = ty + q * (kTile / kRowsPerThread);
        const float diff = mu_i[r][k] - mj;
        acc[q] += diff * diff / (var_i[r][k] + vj + eps);
      }
    }
    __syncthreads();
  }
  const float inv_dim = 1.f / static_cast<float>(dim);
  const int64_t j = j0 + tx;
#pragma unroll
  for (int q = 0; q < kRowsPerThread; ++q) {
    const int64_t i = i0 + ty + q * (kTile / kRowsPerThread);
    if (i >= n_classes || j >= n_classes) continue;
    const float v = i == j ? 0.f : acc[q] * inv_dim;
    out[i * n_classes + j] = v;
    out[j * n_classes + i] = v;
  }
}

}  // namespace
}  // namespace fasa_fast
