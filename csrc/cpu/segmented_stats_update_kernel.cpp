// CPU kernel of fasa_fast::segmented_stats_update_.
// Rows are bucketed by label with one counting pass (labels outside [0, C) are skipped), then
// the classes present are processed in parallel: an exact two-pass mean / unbiased std per
// class in double, followed by the momentum update of the fp32 state.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "../checks.h"

namespace fasa_fast {
namespace {

template <typename scalar_t, typename label_t>
void stats_update_cpu_impl(const at::Tensor& features, const at::Tensor& labels, at::Tensor& mean,
                           at::Tensor& std_, at::Tensor& seen, double momentum,
                           bool momentum_on_var) {
  const int64_t n_rows = features.size(0);
  const int64_t dim = features.size(1);
  const int64_t n_classes = mean.size(0);
  const scalar_t* x = features.const_data_ptr<scalar_t>();
  const label_t* lab = labels.const_data_ptr<label_t>();
  float* mu = mean.data_ptr<float>();
  float* sigma = std_.data_ptr<float>();
  int64_t* seen_p = seen.data_ptr<int64_t>();

  // Counting sort of the valid rows by class: offsets[c]..offsets[c+1] index into `rows`.
  std::vector<int64_t> offsets(n_classes + 1, 0);
  for (int64_t i = 0; i < n_rows; ++i) {
    const int64_t c = static_cast<int64_t>(lab[i]);
    if (c >= 0 && c < n_classes) ++offsets[c + 1];
  }
  std::vector<int64_t> present;
  for (int64_t c = 0; c < n_classes; ++c) {
    if (offsets[c + 1] > 0) present.push_back(c);
    offsets[c + 1] += offsets[c];
  }
  std::vector<int64_t> rows(offsets[n_classes]);
  std::vector<int64_t> cursor(offsets.begin(), offsets.end() - 1);
  for (int64_t i = 0; i < n_rows; ++i) {
    const int64_t c = static_cast<int64_t>(lab[i]);
    if (c >= 0 && c < n_classes) rows[cursor[c]++] = i;
  }

  const double m = momentum;
  const int64_t grain = std::max<int64_t>(1, 65536 / std::max<int64_t>(dim, 1));
  at::parallel_for(0, static_cast<int64_t>(present.size()), grain, [&](int64_t lo, int64_t hi) {
    std::vector<double> sum(dim), m2(dim);
    for (int64_t p = lo; p < hi; ++p) {
      const int64_t c = present[p];
      const int64_t begin = offsets[c], end = offsets[c + 1];
      const int64_t n = end - begin;
      std::fill(sum.begin(), sum.end(), 0.0);
      std::fill(m2.begin(), m2.end(), 0.0);
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* row = x + rows[r] * dim;
        for (int64_t d = 0; d < dim; ++d) sum[d] += static_cast<double>(row[d]);
      }
      const double inv_n = 1.0 / static_cast<double>(n);
      for (int64_t d = 0; d < dim; ++d) sum[d] *= inv_n;  // sum now holds the batch mean
      if (n > 1) {
        for (int64_t r = begin; r < end; ++r) {
          const scalar_t* row = x + rows[r] * dim;
          for (int64_t d = 0; d < dim; ++d) {
            const double dev = static_cast<double>(row[d]) - sum[d];
            m2[d] += dev * dev;
          }
        }
      }
      const double inv_dof = n > 1 ? 1.0 / static_cast<double>(n - 1) : 0.0;
      float* mu_c = mu + c * dim;
      float* sigma_c = sigma + c * dim;
      const bool first = seen_p[c] == 0;
      for (int64_t d = 0; d < dim; ++d) {
        const double var_t = m2[d] * inv_dof;  // 0 when n == 1
        if (first) {
          mu_c[d] = static_cast<float>(sum[d]);
          sigma_c[d] = static_cast<float>(std::sqrt(var_t));
          continue;
        }
        mu_c[d] = static_cast<float>((1.0 - m) * mu_c[d] + m * sum[d]);
        if (momentum_on_var) {
          const double s = sigma_c[d];
          sigma_c[d] = static_cast<float>(std::sqrt((1.0 - m) * s * s + m * var_t));
        } else if (n > 1) {
          sigma_c[d] = static_cast<float>((1.0 - m) * sigma_c[d] + m * std::sqrt(var_t));
        }
      }
      seen_p[c] += 1;
    }
  });
}

void segmented_stats_update_cpu(const at::Tensor& features, const at::Tensor& labels,
                                at::Tensor mean, at::Tensor std_, at::Tensor seen,
                                double momentum, bool momentum_on_var) {
  check_stats_update_args(features, labels, mean, std_, seen, momentum);
  TORCH_CHECK(features.device().is_cpu(), "features: expected a CPU tensor");
  if (features.size(0) == 0 || mean.size(0) == 0) return;
  const auto x = features.contiguous();
  const auto lab = labels.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "segmented_stats_update_cpu", [&] {
        if (lab.scalar_type() == at::kLong) {
          stats_update_cpu_impl<scalar_t, int64_t>(x, lab, mean, std_, seen, momentum,
                                                   momentum_on_var);
        } else {
          stats_update_cpu_impl<scalar_t, int32_t>(x, lab, mean, std_, seen, momentum,
                                                   momentum_on_var);
        }
      });
}

}  // namespace

TORCH_LIBRARY_IMPL(fasa_fast, CPU, m) {
  m.impl("segmented_stats_update_", &segmented_stats_update_cpu);
}

}  // namespace fasa_fast
