// Kernel of fasa_fast::segmented_stats_update_, shared verbatim by the CUDA build
// (segmented_stats_update_launch.cu, which launches it) and the host emulation of the tests
// (tests/cuda_emulation), which runs it with one host thread per CUDA thread.
//
// One launch, one block per class. A block scans the labels in chunks, compacts the rows of its
// class into shared memory with a block-wide prefix sum (deterministic order), drops the rows
// holding a NaN or an Inf (checked by the whole block, each thread a stride of the dimensions;
// their number is added to `nonfinite` once per block, an integer atomic: deterministic), and
// gives each
// thread one feature dimension: an exact two-pass mean / M2 per chunk, merged across chunks
// (Chan et al.), then the momentum update of the fp32 state. Blocks of absent classes exit
// after the label scan, so the cost is one pass over the labels per class plus the positive
// rows. No host synchronisation.
//
// Included by exactly one translation unit of each binary, hence the anonymous namespace.
#pragma once
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#include <cub/block/block_scan.cuh>  // the host emulation brings its own cub::BlockScan
#define FASA_STATS_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define FASA_STATS_HOST_DEVICE inline
#endif

#include "launch_geometry.h"

namespace fasa_fast {
namespace {

constexpr int kItems = 4;  // label chunk: kThreads x kItems rows
constexpr int kChunk = kThreads * kItems;

// NaN and Inf fail, as in torch.isfinite.
FASA_STATS_HOST_DEVICE bool finite_value(float v) {
#if defined(__CUDA_ARCH__)
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

template <typename scalar_t, typename label_t>
__global__ void __launch_bounds__(kThreads)
    segmented_stats_update_kernel(const scalar_t* __restrict__ x, const label_t* __restrict__ labels,
                                  float* __restrict__ mean, float* __restrict__ stdev,
                                  int64_t* __restrict__ seen, int64_t n_rows, int64_t dim,
                                  float momentum, bool momentum_on_var,
                                  int64_t* __restrict__ nonfinite) {
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ int rows[kChunk];
  __shared__ int bad[kChunk];
  __shared__ int chunk_count;
  const int64_t c = blockIdx.x;
  const int tid = threadIdx.x;
  const bool first = seen[c] == 0;
  const int64_t n_chunks = (n_rows + kChunk - 1) / kChunk;
  int64_t total = 0;
  int64_t dropped = 0;  // non-finite rows of this class (thread 0's count, first feature tile)

  for (int64_t d0 = 0; d0 < dim; d0 += kThreads) {
    const int64_t d = d0 + tid;
    float cnt = 0.f, mu = 0.f, m2 = 0.f;
    total = 0;
    for (int64_t k = 0; k < n_chunks; ++k) {
      const int64_t base = k * kChunk;
      if (n_chunks > 1 || d0 == 0) {  // with one chunk the compaction is reused across d tiles
        int flag[kItems], pos[kItems];
        for (int t = 0; t < kItems; ++t) {
          const int64_t i = base + tid * kItems + t;
          flag[t] = (i < n_rows && static_cast<int64_t>(labels[i]) == c) ? 1 : 0;
        }
        int n_here;
        __syncthreads();  // rows/scan_storage of the previous chunk are no longer read
        BlockScan(scan_storage).ExclusiveSum(flag, pos, n_here);
        for (int t = 0; t < kItems; ++t) {
          if (flag[t]) {
            rows[pos[t]] = tid * kItems + t;
            bad[pos[t]] = 0;
          }
        }
        __syncthreads();
        // a row with a NaN / Inf anywhere in its D features is dropped (each thread checks a
        // stride of the dimensions; writers of bad[r] all write 1)
        for (int r = 0; r < n_here; ++r) {
          const int64_t row = base + rows[r];
          for (int64_t j = tid; j < dim; j += kThreads)
            if (!finite_value(static_cast<float>(x[row * dim + j]))) bad[r] = 1;
        }
        __syncthreads();
        if (tid == 0) {  // keep the finite rows, in their order
          int kept = 0;
          for (int r = 0; r < n_here; ++r)
            if (!bad[r]) rows[kept++] = rows[r];
          if (d0 == 0) dropped += n_here - kept;
          chunk_count = kept;
        }
        __syncthreads();
      }
      const int n = chunk_count;
      total += n;
      if (n == 0 || d >= dim) continue;
      float s = 0.f;
      for (int r = 0; r < n; ++r) s += static_cast<float>(x[(base + rows[r]) * dim + d]);
      const float mb = s / n;
      float m2b = 0.f;
      for (int r = 0; r < n; ++r) {
        const float dev = static_cast<float>(x[(base + rows[r]) * dim + d]) - mb;
        m2b += dev * dev;
      }
      const float merged = cnt + n;
      const float delta = mb - mu;
      mu += delta * (n / merged);
      m2 += m2b + delta * delta * (cnt * n / merged);
      cnt = merged;
    }
    if (d0 == 0 && tid == 0 && dropped > 0 && nonfinite != nullptr)
      atomicAdd(reinterpret_cast<unsigned long long*>(nonfinite),
                static_cast<unsigned long long>(dropped));
    if (total == 0) return;  // uniform across the block: the class is absent from this batch
    if (d >= dim) continue;
    const float var_t = total > 1 ? m2 / static_cast<float>(total - 1) : 0.f;
    const int64_t idx = c * dim + d;
    if (first) {
      mean[idx] = mu;
      stdev[idx] = sqrtf(var_t);
    } else {
      mean[idx] = (1.f - momentum) * mean[idx] + momentum * mu;
      if (momentum_on_var) {
        const float s = stdev[idx];
        stdev[idx] = sqrtf((1.f - momentum) * s * s + momentum * var_t);
      } else if (total > 1) {
        stdev[idx] = (1.f - momentum) * stdev[idx] + momentum * sqrtf(var_t);
      }
    }
  }
  __syncthreads();  // every thread has read seen[c] (as `first`) before it changes
  if (tid == 0 && total > 0) seen[c] += 1;
}

}  // namespace
}  // namespace fasa_fast
