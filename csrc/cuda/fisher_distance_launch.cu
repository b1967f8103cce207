// CUDA launch of fasa_fast::fisher_distance; the kernel itself lives in
// fisher_distance_device.cuh, which the host emulation of the tests runs as well.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "fisher_distance_device.cuh"

namespace fasa_fast {
namespace {

at::Tensor fisher_distance_cuda(const at::Tensor& mean, const at::Tensor& std_, double eps) {
  check_fisher_args(mean, std_, eps, at::kCUDA);
  const c10::cuda::CUDAGuard guard(mean.device());
  const int64_t n_classes = mean.size(0);
  auto out = at::empty({n_classes, n_classes}, mean.options());
  if (n_classes == 0) return out;
  const auto mu = mean.contiguous();
  const auto var = std_.square().contiguous();
  fisher_distance_kernel<<<fisher_distance_grid(n_classes), fisher_distance_block(), 0,
                           c10::cuda::getCurrentCUDAStream()>>>(
      mu.const_data_ptr<float>(), var.const_data_ptr<float>(), out.data_ptr<float>(), n_classes,
      mean.size(1), static_cast<float>(eps));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fasa_fast, CUDA, m) { m.impl("fisher_distance", &fisher_distance_cuda); }

}  // namespace fasa_fast
