// CUDA launch of fasa_fast::segmented_stats_update_ (one block per class, dispatched over the
// feature and label dtypes); the kernel itself lives in segmented_stats_update_device.cuh,
// which the host emulation of the tests runs as well.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "../checks.h"
#include "segmented_stats_update_device.cuh"

namespace fasa_fast {
namespace {

// The op's schema fixes this signature, which the CPU entry (csrc/cpu/) has too: one per key.
void segmented_stats_update_cuda(const at::Tensor& features, const at::Tensor& labels,
                                 at::Tensor mean, at::Tensor std_, at::Tensor seen,
                                 double momentum, bool momentum_on_var,
                                 const c10::optional<at::Tensor>& nonfinite) {
  check_stats_update_args(features, labels, mean, std_, seen, momentum, nonfinite, at::kCUDA);
  if (features.size(0) == 0 || mean.size(0) == 0) return;
  const c10::cuda::CUDAGuard guard(features.device());
  const auto x = features.contiguous();
  const auto lab = labels.contiguous();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid = stats_update_grid(mean.size(0)), block = stats_update_block();
  int64_t* bad = nonfinite.has_value() ? nonfinite->data_ptr<int64_t>() : nullptr;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "segmented_stats_update_cuda", [&] {
        if (lab.scalar_type() == at::kLong) {
          segmented_stats_update_kernel<scalar_t, int64_t><<<grid, block, 0, stream>>>(
              x.const_data_ptr<scalar_t>(), lab.const_data_ptr<int64_t>(),
              mean.data_ptr<float>(), std_.data_ptr<float>(), seen.data_ptr<int64_t>(),
              x.size(0), x.size(1), static_cast<float>(momentum), momentum_on_var, bad);
        } else {
          segmented_stats_update_kernel<scalar_t, int32_t><<<grid, block, 0, stream>>>(
              x.const_data_ptr<scalar_t>(), lab.const_data_ptr<int32_t>(),
              mean.data_ptr<float>(), std_.data_ptr<float>(), seen.data_ptr<int64_t>(),
              x.size(0), x.size(1), static_cast<float>(momentum), momentum_on_var, bad);
        }
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

TORCH_LIBRARY_IMPL(fasa_fast, CUDA, m) {
  m.impl("segmented_stats_update_", &segmented_stats_update_cuda);
}

}  // namespace fasa_fast
