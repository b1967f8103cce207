// Kernels of fasa_fast::sample_virtual_features, shared verbatim by the CUDA build
// (sample_virtual_features_launch.cu, which launches them) and the host emulation of the tests
// (tests/cuda_emulation), which runs them with one host thread per CUDA thread. Two launches,
// no host synchronisation:
//  1. one block draws the Bernoulli trials of all classes, ranks the selected ones in cyclic
//     order from a random start (block-wide prefix sums over chunks of classes), writes the
//     slot -> (class, replica) map and the counts, and advances the call counter;
//  2. one block per output row fills it with mean + std * N(0, 1) (or zeros and label -1).
// Draws follow the Philox counter layout of csrc/philox.h.
//
// Included by exactly one translation unit of each binary, hence the anonymous namespace.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#include <cub/block/block_scan.cuh>  // the host emulation brings its own cub::BlockScan
#endif

#include "../philox.h"
#include "launch_geometry.h"

namespace fasa_fast {
namespace {

__global__ void __launch_bounds__(kSelectThreads)
    select_classes_kernel(const int64_t* __restrict__ seen, const float* __restrict__ prob,
                          const int64_t* key, int64_t* rng_state,
                          int32_t* __restrict__ slot_class, int32_t* __restrict__ slot_replica, int64_t* __restrict__ counts,
                          int64_t n_classes, int64_t k, int64_t capacity) {
  using BlockScan = cub::BlockScan<int, kSelectThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ int64_t start;
  const int tid = threadIdx.x;
  const uint64_t seed = static_cast<uint64_t>(key[0]);  // key may alias rng_state[0]
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  const uint32_t call = static_cast<uint32_t>(rng_state[1]);
  for (int64_t s = tid; s < capacity; s += kSelectThreads) slot_class[s] = -1;
  if (tid == 0) start = rotation_start(philox4x32_10(0, 0, 1, call, key0, key1).x[0], n_classes);
  __syncthreads();
  int64_t total = 0;
  for (int64_t base = 0; base < n_classes; base += kSelectThreads) {
    const int64_t pos = base + tid;
    int flag = 0;
    int64_t c = 0;
    if (pos < n_classes) {
      c = (start + pos) % n_classes;
      const uint32_t bits = philox4x32_10(static_cast<uint32_t>(c), 0, 0, call, key0, key1).x[0];
      flag = seen[c] > 0 && bernoulli_bits(bits, prob[c]) ? 1 : 0;
    }
    int rank, chunk_total;
    BlockScan(scan_storage).ExclusiveSum(flag, rank, chunk_total);
    if (flag) {
      for (int64_t j = 0; j < k; ++j) {
        const int64_t slot = (total + rank) * k + j;
        if (slot < capacity) {
          slot_class[slot] = static_cast<int32_t>(c);
          slot_replica[slot] = static_cast<int32_t>(j);
        }
      }
    }
    total += chunk_total;
    __syncthreads();  // scan_storage is reused by the next chunk
  }
  if (tid == 0) {
    counts[0] = min(total * k, capacity);
    counts[1] = total * k;
    rng_state[1] += 1;  // every thread read `call` before the first __syncthreads
  }
}

__global__ void __launch_bounds__(kFillThreads)
    fill_rows_kernel(const float* __restrict__ mean, const float* __restrict__ stdev,
                     const int64_t* key, const int64_t* rng_state,
                     const int32_t* __restrict__ slot_class,
                     const int32_t* __restrict__ slot_replica, float* __restrict__ out,
                     int64_t* __restrict__ labels, int64_t dim) {
  const int64_t slot = blockIdx.x;
  const int32_t c = slot_class[slot];
  float* row = out + slot * dim;
  if (c < 0) {
    for (int64_t d = threadIdx.x; d < dim; d += kFillThreads) row[d] = 0.f;
    if (threadIdx.x == 0) labels[slot] = -1;
    return;
  }
  if (threadIdx.x == 0) labels[slot] = c;
  const uint64_t seed = static_cast<uint64_t>(key[0]);
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  const uint32_t call = static_cast<uint32_t>(rng_state[1] - 1);  // advanced by kernel 1
  const uint32_t stream = static_cast<uint32_t>(2 + slot_replica[slot]);
  const float* mu = mean + static_cast<int64_t>(c) * dim;
  const float* sd = stdev + static_cast<int64_t>(c) * dim;
  for (int64_t q = threadIdx.x; q * 4 < dim; q += kFillThreads) {
    const Philox4 r =
        philox4x32_10(static_cast<uint32_t>(q), static_cast<uint32_t>(c), stream, call, key0, key1);
    float z[4];
    box_muller(r.x[0], r.x[1], z[0], z[1]);
    box_muller(r.x[2], r.x[3], z[2], z[3]);
#pragma unroll
    for (int t = 0; t < 4; ++t) {
      const int64_t d = q * 4 + t;
      if (d < dim) row[d] = mu[d] + sd[d] * z[t];
    }
  }
}

}  // namespace
}  // namespace fasa_fast
