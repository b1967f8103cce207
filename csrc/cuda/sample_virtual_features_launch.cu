// CUDA launches of fasa_fast::sample_virtual_features (class selection, then one block per
// output row); the kernels themselves live in sample_virtual_features_device.cuh, which the
// host emulation of the tests runs as well.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "../op_entries.h"
#include "sample_virtual_features_device.cuh"

namespace fasa_fast {

// the op's CUDA kernel launches; its entry point, the argument checks included, is in
// csrc/op_entries.h
template <>
SampleResult sample_virtual_features_kernel_for<at::kCUDA>(SampleArgs args) {
  auto& [mean, std_, seen, prob, rng_state, k, capacity, key] = args;
  const c10::cuda::CUDAGuard guard(mean.device());
  const int64_t n_classes = mean.size(0), dim = mean.size(1);
  auto features = at::empty({capacity, dim}, mean.options());
  auto labels = at::empty({capacity}, mean.options().dtype(at::kLong));
  auto counts = at::zeros({2}, mean.options().dtype(at::kLong));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  if (n_classes == 0) {
    features.zero_();
    labels.fill_(-1);
    rng_state.narrow(0, 1, 1).add_(1);
    return {features, labels, counts};
  }
  // the Philox key: `key` when given, else rng_state[0]
  const int64_t* key_p = key.has_value() ? key->const_data_ptr<int64_t>()
                                         : rng_state.const_data_ptr<int64_t>();
  auto slots = at::empty({2, std::max<int64_t>(capacity, 1)}, mean.options().dtype(at::kInt));
  const auto mu = mean.contiguous(), sigma = std_.contiguous();
  const auto seen_c = seen.contiguous(), prob_c = prob.contiguous();
  select_classes_kernel<<<select_classes_grid(), select_classes_block(), 0, stream>>>(
      seen_c.const_data_ptr<int64_t>(), prob_c.const_data_ptr<float>(), key_p,
      rng_state.data_ptr<int64_t>(), slots[0].data_ptr<int32_t>(), slots[1].data_ptr<int32_t>(),
      counts.data_ptr<int64_t>(), n_classes, k, capacity);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (capacity > 0) {
    fill_rows_kernel<<<fill_rows_grid(capacity), fill_rows_block(), 0, stream>>>(
        mu.const_data_ptr<float>(), sigma.const_data_ptr<float>(), key_p,
        rng_state.const_data_ptr<int64_t>(), slots[0].const_data_ptr<int32_t>(),
        slots[1].const_data_ptr<int32_t>(), features.data_ptr<float>(),
        labels.data_ptr<int64_t>(), dim);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {features, labels, counts};
}

TORCH_LIBRARY_IMPL(fasa_fast, CUDA, m) {
  m.impl("sample_virtual_features", &sample_virtual_features_entry<at::kCUDA>);
}

}  // namespace fasa_fast
