// The entry points of the ops with a long schema (fisher_distance's three parameters stay in
// its files), written once for CPU and CUDA: the schema's parameters, the argument checks of
// checks.h, then the kernel of the dispatch key it is registered for. csrc/cpu/<op>.cpp and
// csrc/cuda/<op>_launch.cu each define only their kernel (`<op>_kernel_for<at::kCPU>` /
// `<at::kCUDA>`, given the checked arguments as one struct) and register
// `&<op>_entry<their device type>`. The parameter types are the ones the schema
// (fasa_fast/ops/<op>.py) binds to; mutable tensors come by value, as the dispatcher passes them.
#pragma once
#include <ATen/ATen.h>

#include <optional>
#include <tuple>

#include "checks.h"

namespace fasa_fast {

// fasa_fast::segmented_stats_update_'s arguments, after check_stats_update_args.
struct StatsUpdateArgs {
  at::Tensor features, labels, mean, std_, seen;
  double momentum;
  bool momentum_on_var;
  c10::optional<at::Tensor> nonfinite;
};

template <at::DeviceType device>
void segmented_stats_update_kernel_for(StatsUpdateArgs args);  // N >= 1 rows, C >= 1 classes

template <at::DeviceType device>
void segmented_stats_update_entry(const at::Tensor& features, const at::Tensor& labels,
                                  at::Tensor mean, at::Tensor std_, at::Tensor seen,
                                  double momentum, bool momentum_on_var,
                                  const c10::optional<at::Tensor>& nonfinite) {
  check_stats_update_args(features, labels, mean, std_, seen, momentum, nonfinite, device);
  if (features.size(0) == 0 || mean.size(0) == 0) return;  // no row or no class: nothing to do
  segmented_stats_update_kernel_for<device>(
      {features, labels, mean, std_, seen, momentum, momentum_on_var, nonfinite});
}

// fasa_fast::sample_virtual_features's arguments, after check_sample_args.
struct SampleArgs {
  at::Tensor mean, std_, seen, prob, rng_state;
  int64_t k, capacity;
  c10::optional<at::Tensor> key;
};
using SampleResult = std::tuple<at::Tensor, at::Tensor, at::Tensor>;  // features, labels, counts

template <at::DeviceType device>
SampleResult sample_virtual_features_kernel_for(SampleArgs args);  // each backend specialises it

template <at::DeviceType device>
SampleResult sample_virtual_features_entry(const at::Tensor& mean, const at::Tensor& std_,
                                           const at::Tensor& seen, const at::Tensor& prob,
                                           at::Tensor rng_state, int64_t k, int64_t capacity,
                                           const c10::optional<at::Tensor>& key) {
  check_sample_args(mean, std_, seen, prob, rng_state, k, capacity, key, device);
  return sample_virtual_features_kernel_for<device>(
      {mean, std_, seen, prob, rng_state, k, capacity, key});
}

}  // namespace fasa_fast
