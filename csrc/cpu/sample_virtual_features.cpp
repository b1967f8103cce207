// CPU kernel of fasa_fast::sample_virtual_features. Selection (a Bernoulli(p_c) trial per seen
// class) and the compaction into `capacity` rows are sequential over classes; the Gaussian
// rows are filled in parallel. Draws follow the Philox counter layout of csrc/philox.h.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <tuple>
#include <vector>

#include "../op_entries.h"
#include "../philox.h"

namespace fasa_fast {

// the op's CPU kernel; its entry point, the argument checks included, is in csrc/op_entries.h
template <>
SampleResult sample_virtual_features_kernel_for<at::kCPU>(SampleArgs args) {
  auto& [mean, std_, seen, prob, rng_state, k, capacity, key] = args;
  const int64_t n_classes = mean.size(0), dim = mean.size(1);
  auto features = at::zeros({capacity, dim}, mean.options());
  auto labels = at::full({capacity}, -1, mean.options().dtype(at::kLong));
  auto counts = at::zeros({2}, mean.options().dtype(at::kLong));
  int64_t* state = rng_state.data_ptr<int64_t>();
  const uint64_t seed = static_cast<uint64_t>(key.has_value() ? *key->const_data_ptr<int64_t>()
                                                                : state[0]);
  const uint32_t key0 = static_cast<uint32_t>(seed), key1 = static_cast<uint32_t>(seed >> 32);
  const uint32_t call = static_cast<uint32_t>(state[1]);
  state[1] += 1;
  if (n_classes == 0) return {features, labels, counts};

  const auto mu = mean.contiguous(), sigma = std_.contiguous();
  const auto seen_c = seen.contiguous(), prob_c = prob.contiguous();
  const int64_t* seen_p = seen_c.const_data_ptr<int64_t>();
  const float* prob_p = prob_c.const_data_ptr<float>();
  std::vector<uint8_t> selected(n_classes);
  for (int64_t c = 0; c < n_classes; ++c) {
    const uint32_t bits = philox4x32_10(static_cast<uint32_t>(c), 0, 0, call, key0, key1).x[0];
    selected[c] = seen_p[c] > 0 && bernoulli_bits(bits, prob_p[c]);
  }
  const int64_t start =
      rotation_start(philox4x32_10(0, 0, 1, call, key0, key1).x[0], n_classes);
  // slot -> (class, replica) in cyclic class order from `start`; later classes overflow.
  std::vector<int64_t> slot_class, slot_replica;
  int64_t total = 0;
  for (int64_t pos = 0; pos < n_classes; ++pos) {
    const int64_t c = (start + pos) % n_classes;
    if (!selected[c]) continue;
    for (int64_t j = 0; j < k; ++j) {
      if (total * k + j < capacity) {
        slot_class.push_back(c);
        slot_replica.push_back(j);
      }
    }
    ++total;
  }
  const int64_t filled = static_cast<int64_t>(slot_class.size());
  counts.data_ptr<int64_t>()[0] = filled;
  counts.data_ptr<int64_t>()[1] = total * k;

  const float* mu_p = mu.const_data_ptr<float>();
  const float* sigma_p = sigma.const_data_ptr<float>();
  float* out = features.data_ptr<float>();
  int64_t* lab = labels.data_ptr<int64_t>();
  at::parallel_for(0, filled, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t slot = lo; slot < hi; ++slot) {
      const int64_t c = slot_class[slot];
      const uint32_t stream = static_cast<uint32_t>(2 + slot_replica[slot]);
      lab[slot] = c;
      for (int64_t d0 = 0; d0 < dim; d0 += 4) {
        const Philox4 r = philox4x32_10(static_cast<uint32_t>(d0 / 4), static_cast<uint32_t>(c),
                                        stream, call, key0, key1);
        float z[4];
        box_muller(r.x[0], r.x[1], z[0], z[1]);
        box_muller(r.x[2], r.x[3], z[2], z[3]);
        for (int t = 0; t < 4 && d0 + t < dim; ++t) {
          const int64_t idx = c * dim + d0 + t;
          out[slot * dim + d0 + t] = mu_p[idx] + sigma_p[idx] * z[t];
        }
      }
    }
  });
  return {features, labels, counts};
}

TORCH_LIBRARY_IMPL(fasa_fast, CPU, m) {
  m.impl("sample_virtual_features", &sample_virtual_features_entry<at::kCPU>);
}

}  // namespace fasa_fast
