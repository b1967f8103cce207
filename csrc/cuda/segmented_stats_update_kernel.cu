// CUDA kernel of fasa_fast::segmented_stats_update_: one launch, one block per class.
// A block scans the labels in chunks, compacts the rows of its class into shared memory with a
// block-wide prefix sum (deterministic order), and gives each thread one feature dimension:
// an exact two-pass mean / M2 per chunk, merged across chunks (Chan et al.), then the momentum
// update of the fp32 state. Blocks of absent classes exit after the label scan, so the cost is
// one pass over the labels per class plus the positive rows. No host synchronisation.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <cub/block/block_scan.cuh>

#include "../checks.h"

namespace fasa_fast {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 4;
constexpr int kChunk = kThreads * kItems;

template <typename scalar_t, typename label_t>
__global__ void __launch_bounds__(kThreads)
    segmented_stats_update_kernel(const scalar_t* __restrict__ x, const label_t* __restrict__ labels,
                                  float* __restrict__ mean, float* __restrict__ stdev,
                                  int64_t* __restrict__ seen, int64_t n_rows, int64_t dim,
                                  float momentum, bool momentum_on_var) {
  using BlockScan = cub::BlockScan<int, kThreads>;
  __shared__ typename BlockScan::TempStorage scan_storage;
  __shared__ int rows[kChunk];
  __shared__ int chunk_count;
  const int64_t c = blockIdx.x;
  const int tid = threadIdx.x;
  const bool first = seen[c] == 0;
  const int64_t n_chunks = (n_rows + kChunk - 1) / kChunk;
  int64_t total = 0;

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
        for (int t = 0; t < kItems; ++t)
          if (flag[t]) rows[pos[t]] = tid * kItems + t;
        if (tid == 0) chunk_count = n_here;
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

void segmented_stats_update_cuda(const at::Tensor& features, const at::Tensor& labels,
                                 at::Tensor mean, at::Tensor std_, at::Tensor seen,
                                 double momentum, bool momentum_on_var) {
  check_stats_update_args(features, labels, mean, std_, seen, momentum);
  TORCH_CHECK(features.is_cuda(), "features: expected a CUDA tensor");
  if (features.size(0) == 0 || mean.size(0) == 0) return;
  const c10::cuda::CUDAGuard guard(features.device());
  const auto x = features.contiguous();
  const auto lab = labels.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid(static_cast<unsigned>(mean.size(0)));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "segmented_stats_update_cuda", [&] {
        if (lab.scalar_type() == at::kLong) {
          segmented_stats_update_kernel<scalar_t, int64_t><<<grid, kThreads, 0, stream>>>(
              x.const_data_ptr<scalar_t>(), lab.const_data_ptr<int64_t>(),
              mean.data_ptr<float>(), std_.data_ptr<float>(), seen.data_ptr<int64_t>(),
              x.size(0), x.size(1), static_cast<float>(momentum), momentum_on_var);
        } else {
          segmented_stats_update_kernel<scalar_t, int32_t><<<grid, kThreads, 0, stream>>>(
              x.const_data_ptr<scalar_t>(), lab.const_data_ptr<int32_t>(),
              mean.data_ptr<float>(), std_.data_ptr<float>(), seen.data_ptr<int64_t>(),
              x.size(0), x.size(1), static_cast<float>(momentum), momentum_on_var);
        }
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

TORCH_LIBRARY_IMPL(fasa_fast, CUDA, m) {
  m.impl("segmented_stats_update_", &segmented_stats_update_cuda);
}

}  // namespace fasa_fast
