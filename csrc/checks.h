// Argument checks shared by the CPU and CUDA kernels. The Python wrappers validate first with
// friendlier messages; these keep a direct torch.ops call from ever touching memory out of
// bounds.
#pragma once
#include <ATen/ATen.h>

namespace fasa_fast {

inline void check_stats_update_args(const at::Tensor& features, const at::Tensor& labels,
                                    const at::Tensor& mean, const at::Tensor& std_,
                                    const at::Tensor& seen, double momentum) {
  TORCH_CHECK(features.dim() == 2, "features: expected a 2-D [N, D] tensor, got ",
              features.dim(), "-D");
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == features.size(0),
              "labels: expected a 1-D tensor of length N=", features.size(0), ", got shape ",
              labels.sizes());
  TORCH_CHECK(labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt,
              "labels: expected int64 or int32, got ", labels.scalar_type());
  TORCH_CHECK(features.scalar_type() == at::kFloat || features.scalar_type() == at::kHalf ||
                  features.scalar_type() == at::kBFloat16,
              "features: expected float32, float16 or bfloat16, got ", features.scalar_type());
  TORCH_CHECK(mean.dim() == 2 && mean.size(1) == features.size(1),
              "mean: expected [C, D] with D=", features.size(1), ", got ", mean.sizes());
  TORCH_CHECK(std_.sizes() == mean.sizes(), "std: expected shape ", mean.sizes(), ", got ",
              std_.sizes());
  TORCH_CHECK(mean.scalar_type() == at::kFloat && std_.scalar_type() == at::kFloat,
              "mean/std: running statistics must be float32");
  TORCH_CHECK(seen.dim() == 1 && seen.size(0) == mean.size(0) && seen.scalar_type() == at::kLong,
              "seen: expected an int64 tensor of shape [C]=[", mean.size(0), "], got ",
              seen.scalar_type(), " ", seen.sizes());
  TORCH_CHECK(mean.is_contiguous() && std_.is_contiguous() && seen.is_contiguous(),
              "mean/std/seen: state tensors are updated in place and must be contiguous");
  TORCH_CHECK(momentum >= 0.0 && momentum <= 1.0, "momentum: expected a value in [0, 1], got ",
              momentum);
  const auto device = mean.device();
  TORCH_CHECK(features.device() == device && labels.device() == device &&
                  std_.device() == device && seen.device() == device,
              "all tensors must be on one device");
}

inline void check_fisher_args(const at::Tensor& mean, const at::Tensor& std_, double eps) {
  TORCH_CHECK(mean.dim() == 2 && mean.size(1) > 0,
              "mean: expected a 2-D [C, D] tensor with D >= 1, got ", mean.sizes());
  TORCH_CHECK(std_.sizes() == mean.sizes(), "std: expected shape ", mean.sizes(), ", got ",
              std_.sizes());
  TORCH_CHECK(mean.scalar_type() == at::kFloat && std_.scalar_type() == at::kFloat,
              "mean/std: expected float32");
  TORCH_CHECK(mean.device() == std_.device(), "mean/std: must be on one device");
  TORCH_CHECK(eps >= 0.0, "eps: expected >= 0, got ", eps);
}

inline void check_sample_args(const at::Tensor& mean, const at::Tensor& std_,
                              const at::Tensor& seen, const at::Tensor& prob,
                              const at::Tensor& rng_state, int64_t k, int64_t capacity) {
  TORCH_CHECK(mean.dim() == 2, "mean: expected a 2-D [C, D] tensor, got ", mean.sizes());
  TORCH_CHECK(std_.sizes() == mean.sizes(), "std: expected shape ", mean.sizes(), ", got ",
              std_.sizes());
  TORCH_CHECK(mean.scalar_type() == at::kFloat && std_.scalar_type() == at::kFloat,
              "mean/std: expected float32");
  const int64_t n_classes = mean.size(0);
  TORCH_CHECK(seen.dim() == 1 && seen.size(0) == n_classes && seen.scalar_type() == at::kLong,
              "seen: expected an int64 tensor of shape [", n_classes, "]");
  TORCH_CHECK(prob.dim() == 1 && prob.size(0) == n_classes && prob.scalar_type() == at::kFloat,
              "prob: expected a float32 tensor of shape [", n_classes, "]");
  TORCH_CHECK(rng_state.dim() == 1 && rng_state.size(0) == 2 &&
                  rng_state.scalar_type() == at::kLong && rng_state.is_contiguous(),
              "rng_state: expected a contiguous int64 tensor of shape [2] (seed, call counter)");
  TORCH_CHECK(k >= 1, "k: expected >= 1, got ", k);
  TORCH_CHECK(capacity >= 0, "capacity: expected >= 0, got ", capacity);
  const auto device = mean.device();
  TORCH_CHECK(std_.device() == device && seen.device() == device && prob.device() == device &&
                  rng_state.device() == device,
              "all tensors must be on one device");
}

}  // namespace fasa_fast
