// Argument checks shared by the CPU and CUDA kernels. The Python wrappers validate first (the
// same rules, fasa_fast/ops/_validate.py); these keep a direct torch.ops call from ever
// touching memory out of bounds. Every message names the tensor, what was expected and what
// came, as the Python ones do. Each check_<op>_args ends with the device type of the kernel that
// calls it (the dispatch key it is registered for).
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

struct Named {
  const at::Tensor& tensor;
  const char* name;
};

// Each of `tensors`, in order, on the device of `reference`.
inline void same_device(std::initializer_list<Named> tensors, const at::Tensor& reference,
                        const char* reference_name) {
  for (const auto& t : tensors) same_device(t.tensor, t.name, reference, reference_name);
}

// An optional one-element int64 tensor (a counter, a key), on the device of `reference`.
inline void optional_int64_scalar(const c10::optional<at::Tensor>& t, const char* name,
                                  const char* why, const at::Tensor& reference,
                                  const char* reference_name) {
  if (!t.has_value()) return;
  shape(*t, name, {1}, why);
  dtype(*t, name, {at::kLong});
  same_device(*t, name, reference, reference_name);
}

// The kernel registered for one dispatch key received a tensor of another device type.
inline void device_type(const at::Tensor& t, const char* name, at::DeviceType type) {
  TORCH_CHECK(t.device().type() == type, name, ": expected a ", at::Device(type).str(),
              " tensor, got one on ", t.device());
}

// The per-class state both segmented_stats_update_ and sample_virtual_features read, after
// mean's own layout: mean float32, std as mean, seen [C] int64.
inline void class_state(const at::Tensor& mean, const at::Tensor& std_, const at::Tensor& seen) {
  dtype(mean, "mean", {at::kFloat});
  shape(std_, "std", mean.sizes(), "as mean");
  dtype(std_, "std", {at::kFloat});
  shape(seen, "seen", {mean.size(0)}, "C of mean");
  dtype(seen, "seen", {at::kLong});
}

}  // namespace check

inline void check_stats_update_args(const at::Tensor& features, const at::Tensor& labels,
                                    const at::Tensor& mean, const at::Tensor& std_,
                                    const at::Tensor& seen, double momentum,
                                    const c10::optional<at::Tensor>& nonfinite,
                                    at::DeviceType device) {
  check::dim(features, "features", 2, "[N, D]");
  check::dtype(features, "features", {at::kFloat, at::kHalf, at::kBFloat16});
  check::dim(labels, "labels", 1, "[N]");
  check::shape(labels, "labels", {features.size(0)}, "N rows of features");
  check::dtype(labels, "labels", {at::kLong, at::kInt});
  check::dim(mean, "mean", 2, "[C, D]");
  check::shape(mean, "mean", {mean.size(0), features.size(1)}, "D columns of features");
  check::class_state(mean, std_, seen);
  check::contiguous(mean, "mean");
  check::contiguous(std_, "std");
  check::contiguous(seen, "seen");
  TORCH_CHECK(momentum >= 0.0 && momentum <= 1.0, "momentum: expected a value in [0, 1], got ",
              momentum);
  check::same_device({{labels, "labels"}, {mean, "mean"}, {std_, "std"}, {seen, "seen"}}, features,
                     "features");
  check::optional_int64_scalar(nonfinite, "nonfinite", "one counter", features, "features");
  check::device_type(features, "features", device);
}

inline void check_fisher_args(const at::Tensor& mean, const at::Tensor& std_, double eps,
                              at::DeviceType device) {
  check::dim(mean, "mean", 2, "[C, D]");
  TORCH_CHECK(mean.size(1) > 0, "mean: expected D >= 1 feature dimensions, got shape ",
              mean.sizes());
  check::dtype(mean, "mean", {at::kFloat});
  check::shape(std_, "std", mean.sizes(), "as mean");
  check::dtype(std_, "std", {at::kFloat});
  check::same_device(std_, "std", mean, "mean");
  TORCH_CHECK(eps >= 0.0, "eps: expected >= 0, got ", eps);
  check::device_type(mean, "mean", device);
}

inline void check_sample_args(const at::Tensor& mean, const at::Tensor& std_,
                              const at::Tensor& seen, const at::Tensor& prob,
                              const at::Tensor& rng_state, int64_t k, int64_t capacity,
                              const c10::optional<at::Tensor>& key, at::DeviceType device) {
  check::dim(mean, "mean", 2, "[C, D]");
  check::class_state(mean, std_, seen);
  check::shape(prob, "prob", {mean.size(0)}, "C of mean");
  check::dtype(prob, "prob", {at::kFloat});
  check::shape(rng_state, "rng_state", {2}, "seed, call counter");
  check::dtype(rng_state, "rng_state", {at::kLong});
  check::contiguous(rng_state, "rng_state");
  TORCH_CHECK(k >= 1, "k: expected >= 1, got ", k);
  TORCH_CHECK(capacity >= 0, "capacity: expected >= 0, got ", capacity);
  check::same_device({{std_, "std"}, {seen, "seen"}, {prob, "prob"}, {rng_state, "rng_state"}},
                     mean, "mean");
  check::optional_int64_scalar(key, "key", "one 64-bit Philox key", mean, "mean");
  check::device_type(mean, "mean", device);
}

}  // namespace fasa_fast
