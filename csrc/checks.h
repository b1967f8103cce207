// Argument checks shared by the CPU and CUDA kernels. The Python wrappers validate first (the
// same rules, fasa_fast/ops/_validate.py); these keep a direct torch.ops call from ever
// touching memory out of bounds. Every message names the tensor, what was expected and what
// came, as the Python ones do.
#pragma once
#include <ATen/ATen.h>

#include <initializer_list>
#include <optional>
// Optional tensors are spelt c10::optional throughout csrc/: torch >= 2.4 makes it an alias of
// std::optional, but torch 2.1-2.3 have their own class, and the schema's `Tensor?` binds only to it.
#include <sstream>
#include <string>

namespace fasa_fast {
namespace check {

inline void dim(const at::Tensor& t, const char* name, int64_t ndim, const char* layout) {
  TORCH_CHECK(t.dim() == ndim, name, ": expected a ", ndim, "-D ", layout,
              " tensor, got shape ", t.sizes());
}

inline void dtype(const at::Tensor& t, const char* name,
                  std::initializer_list<at::ScalarType> allowed) {
  for (const auto type : allowed) {
    if (t.scalar_type() == type) return;
  }
  std::ostringstream names;
  const char* sep = "";
  for (const auto type : allowed) {
    names << sep << type;
    sep = ", ";
  }
  TORCH_CHECK(false, name, ": expected dtype ", names.str(), ", got ", t.scalar_type());
}

// `why` says where the expected shape comes from, e.g. "as mean".
inline void shape(const at::Tensor& t, const char* name, at::IntArrayRef expected,
                  const char* why) {
  TORCH_CHECK(t.sizes() == expected, name, ": expected shape ", expected, " (", why, "), got ",
              t.sizes());
}

inline void contiguous(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.is_contiguous(), name,
              ": expected a contiguous tensor (the state is updated in place), got strides ",
              t.strides());
}

inline void same_device(const at::Tensor& t, const char* name, const at::Tensor& reference,
                        const char* reference_name) {
  TORCH_CHECK(t.device() == reference.device(), name, ": expected a tensor on ",
              reference.device(), " (the device of ", reference_name, "), got ", t.device());
}

// The kernel registered for one dispatch key received a tensor of another device type.
inline void device_type(const at::Tensor& t, const char* name, at::DeviceType type) {
  TORCH_CHECK(t.device().type() == type, name, ": expected a ", at::Device(type).str(),
              " tensor, got one on ", t.device());
}

}  // namespace check

inline void check_stats_update_args(const at::Tensor& features, const at::Tensor& labels,
                                    const at::Tensor& mean, const at::Tensor& std_,
                                    const at::Tensor& seen, double momentum,
                                    const c10::optional<at::Tensor>& nonfinite) {
  check::dim(features, "features", 2, "[N, D]");
  check::dtype(features, "features", {at::kFloat, at::kHalf, at::kBFloat16});
  check::dim(labels, "labels", 1, "[N]");
  check::shape(labels, "labels", {features.size(0)}, "N rows of features");
  check::dtype(labels, "labels", {at::kLong, at::kInt});
  check::dim(mean, "mean", 2, "[C, D]");
  check::shape(mean, "mean", {mean.size(0), features.size(1)}, "D columns of features");
  check::dtype(mean, "mean", {at::kFloat});
  check::shape(std_, "std", mean.sizes(), "as mean");
  check::dtype(std_, "std", {at::kFloat});
  check::shape(seen, "seen", {mean.size(0)}, "C of mean");
  check::dtype(seen, "seen", {at::kLong});
  check::contiguous(mean, "mean");
  check::contiguous(std_, "std");
  check::contiguous(seen, "seen");
  TORCH_CHECK(momentum >= 0.0 && momentum <= 1.0, "momentum: expected a value in [0, 1], got ",
              momentum);
  check::same_device(labels, "labels", features, "features");
  check::same_device(mean, "mean", features, "features");
  check::same_device(std_, "std", features, "features");
  check::same_device(seen, "seen", features, "features");
  if (nonfinite.has_value()) {
    check::shape(*nonfinite, "nonfinite", {1}, "one counter");
    check::dtype(*nonfinite, "nonfinite", {at::kLong});
    check::same_device(*nonfinite, "nonfinite", features, "features");
  }
}

inline void check_fisher_args(const at::Tensor& mean, const at::Tensor& std_, double eps) {
  check::dim(mean, "mean", 2, "[C, D]");
  TORCH_CHECK(mean.size(1) > 0, "mean: expected D >= 1 feature dimensions, got shape ",
              mean.sizes());
  check::dtype(mean, "mean", {at::kFloat});
  check::shape(std_, "std", mean.sizes(), "as mean");
  check::dtype(std_, "std", {at::kFloat});
  check::same_device(std_, "std", mean, "mean");
  TORCH_CHECK(eps >= 0.0, "eps: expected >= 0, got ", eps);
}

inline void check_sample_args(const at::Tensor& mean, const at::Tensor& std_,
                              const at::Tensor& seen, const at::Tensor& prob,
                              const at::Tensor& rng_state, int64_t k, int64_t capacity,
                              const c10::optional<at::Tensor>& key) {
  check::dim(mean, "mean", 2, "[C, D]");
  check::dtype(mean, "mean", {at::kFloat});
  check::shape(std_, "std", mean.sizes(), "as mean");
  check::dtype(std_, "std", {at::kFloat});
  check::shape(seen, "seen", {mean.size(0)}, "C of mean");
  check::dtype(seen, "seen", {at::kLong});
  check::shape(prob, "prob", {mean.size(0)}, "C of mean");
  check::dtype(prob, "prob", {at::kFloat});
  check::shape(rng_state, "rng_state", {2}, "seed, call counter");
  check::dtype(rng_state, "rng_state", {at::kLong});
  check::contiguous(rng_state, "rng_state");
  TORCH_CHECK(k >= 1, "k: expected >= 1, got ", k);
  TORCH_CHECK(capacity >= 0, "capacity: expected >= 0, got ", capacity);
  check::same_device(std_, "std", mean, "mean");
  check::same_device(seen, "seen", mean, "mean");
  check::same_device(prob, "prob", mean, "mean");
  check::same_device(rng_state, "rng_state", mean, "mean");
  if (key.has_value()) {
    check::shape(*key, "key", {1}, "one 64-bit Philox key");
    check::dtype(*key, "key", {at::kLong});
    check::same_device(*key, "key", mean, "mean");
  }
}

}  // namespace fasa_fast
