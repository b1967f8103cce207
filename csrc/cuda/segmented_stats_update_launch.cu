// CUDA launch of fasa_fast::segmented_stats_update_ (one block per class, dispatched over the
// feature and label dtypes); the kernel itself lives in segmented_stats_update_device.cuh,
// which the host emulation of the tests runs as well.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "../op_entries.h"
#include "segmented_stats_update_device.cuh"

namespace fasa_fast {

// the op's CUDA kernel launch; its entry point, the argument checks included, is in
// csrc/op_entries.h
template <>
void segmented_stats_update_kernel_for<at::kCUDA>(StatsUpdateArgs args) {
  const c10::cuda::CUDAGuard guard(args.features.device());
  const auto x = args.features.contiguous();
  const auto lab = args.labels.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid = stats_update_grid(args.mean.size(0)), block = stats_update_block();
  int64_t* bad = args.nonfinite.has_value() ? args.nonfinite->data_ptr<int64_t>() : nullptr;
  float* mu = args.mean.data_ptr<float>();
  float* sigma = args.std_.data_ptr<float>();
  int64_t* seen = args.seen.data_ptr<int64_t>();
  const float momentum = static_cast<float>(args.momentum);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "segmented_stats_update_cuda", [&] {
        if (lab.scalar_type() == at::kLong) {
          segmented_stats_update_kernel<scalar_t, int64_t><<<grid, block, 0, stream>>>(
              x.const_data_ptr<scalar_t>(), lab.const_data_ptr<int64_t>(),
              mu, sigma, seen, x.size(0), x.size(1), momentum, args.momentum_on_var, bad);
        } else {
          segmented_stats_update_kernel<scalar_t, int32_t><<<grid, block, 0, stream>>>(
              x.const_data_ptr<scalar_t>(), lab.const_data_ptr<int32_t>(),
              mu, sigma, seen, x.size(0), x.size(1), momentum, args.momentum_on_var, bad);
        }
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

TORCH_LIBRARY_IMPL(fasa_fast, CUDA, m) {
  m.impl("segmented_stats_update_", &segmented_stats_update_entry<at::kCUDA>);
}

}  // namespace fasa_fast
