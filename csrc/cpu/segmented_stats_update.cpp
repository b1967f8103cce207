// CPU kernel of fasa_fast::segmented_stats_update_.
// Rows are bucketed by label with one counting pass (labels outside [0, C) are skipped, and so
// are foreground rows holding a NaN or an Inf, which are counted into `nonfinite`), then
// the classes present are processed in parallel: an exact two-pass mean / unbiased std per
// class in double, followed by the momentum update of the fp32 state. The inner loops are
// branch-free over D so that they vectorise (an AVX2 clone is chosen at load time on x86-64).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <optional>
#include <vector>

#include "../op_entries.h"

namespace fasa_fast {
namespace {

#if defined(__x86_64__) && defined(__GNUC__)
#define FASA_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define FASA_CPU_CLONES
#endif

// Adds `row` (converted to double) into `acc`; and the squared deviations from `center`.
template <typename scalar_t>
FASA_CPU_CLONES void accumulate_row(const scalar_t* __restrict__ row, double* __restrict__ acc,
                                    int64_t dim) {
  for (int64_t d = 0; d < dim; ++d) acc[d] += static_cast<double>(static_cast<float>(row[d]));
}

template <typename scalar_t>
FASA_CPU_CLONES void accumulate_sq_dev(const scalar_t* __restrict__ row,
                                       const double* __restrict__ center,
                                       double* __restrict__ acc, int64_t dim) {
  for (int64_t d = 0; d < dim; ++d) {
    const double dev = static_cast<double>(static_cast<float>(row[d])) - center[d];
    acc[d] += dev * dev;
  }
}

// Momentum update of one class's state from its batch mean and M2 (branch-free inner loops).
FASA_CPU_CLONES void update_class(float* __restrict__ mu, float* __restrict__ sigma,
                                  const double* __restrict__ batch_mean,
                                  const double* __restrict__ m2, int64_t n, int64_t dim,
                                  bool first, double m, bool momentum_on_var) {
  const double inv_dof = n > 1 ? 1.0 / static_cast<double>(n - 1) : 0.0;  // var 0 when n == 1
  if (first) {
    for (int64_t d = 0; d < dim; ++d) {
      mu[d] = static_cast<float>(batch_mean[d]);
      sigma[d] = static_cast<float>(std::sqrt(m2[d] * inv_dof));
    }
    return;
  }
  for (int64_t d = 0; d < dim; ++d) mu[d] = static_cast<float>((1.0 - m) * mu[d] + m * batch_mean[d]);
  if (momentum_on_var) {
    for (int64_t d = 0; d < dim; ++d) {
      const double s = sigma[d];
      sigma[d] = static_cast<float>(std::sqrt((1.0 - m) * s * s + m * m2[d] * inv_dof));
    }
  } else if (n > 1) {
    for (int64_t d = 0; d < dim; ++d)
      sigma[d] = static_cast<float>((1.0 - m) * sigma[d] + m * std::sqrt(m2[d] * inv_dof));
  }
}

// Whether every feature of a row is finite (a NaN or an Inf row is kept out of the statistics).
template <typename scalar_t>
bool row_is_finite(const scalar_t* row, int64_t dim) {
  for (int64_t d = 0; d < dim; ++d) {
    if (!std::isfinite(static_cast<float>(row[d]))) return false;
  }
  return true;
}

template <typename scalar_t, typename label_t>
void stats_update_cpu_impl(const at::Tensor& features, const at::Tensor& labels, at::Tensor& mean,
                           at::Tensor& std_, at::Tensor& seen, double momentum,
                           bool momentum_on_var, int64_t* nonfinite) {
  const int64_t n_rows = features.size(0);
  const int64_t dim = features.size(1);
  const int64_t n_classes = mean.size(0);
  const scalar_t* x = features.const_data_ptr<scalar_t>();
  const label_t* lab = labels.const_data_ptr<label_t>();
  float* mu = mean.data_ptr<float>();
  float* sigma = std_.data_ptr<float>();
  int64_t* seen_p = seen.data_ptr<int64_t>();

  // The class of each row that enters the statistics (-1: background, ignored or non-finite).
  std::vector<int64_t> row_class(n_rows, -1);
  int64_t bad_rows = 0;
  for (int64_t i = 0; i < n_rows; ++i) {
    const int64_t c = static_cast<int64_t>(lab[i]);
    if (c < 0 || c >= n_classes) continue;
    if (row_is_finite(x + i * dim, dim)) {
      row_class[i] = c;
    } else {
      ++bad_rows;
    }
  }
  if (nonfinite != nullptr) *nonfinite += bad_rows;
  // Counting sort of the valid rows by class: offsets[c]..offsets[c+1] index into `rows`.
  std::vector<int64_t> offsets(n_classes + 1, 0);
  for (int64_t i = 0; i < n_rows; ++i) {
    if (row_class[i] >= 0) ++offsets[row_class[i] + 1];
  }
  std::vector<int64_t> present;
  for (int64_t c = 0; c < n_classes; ++c) {
    if (offsets[c + 1] > 0) present.push_back(c);
    offsets[c + 1] += offsets[c];
  }
  std::vector<int64_t> rows(offsets[n_classes]);
  std::vector<int64_t> cursor(offsets.begin(), offsets.end() - 1);
  for (int64_t i = 0; i < n_rows; ++i) {
    if (row_class[i] >= 0) rows[cursor[row_class[i]]++] = i;
  }

  // Parallel over classes, in chunks of roughly equal row counts' worth of work.
  const int64_t grain = std::max<int64_t>(1, 32768 / std::max<int64_t>(dim, 1));
  at::parallel_for(0, static_cast<int64_t>(present.size()), grain, [&](int64_t lo, int64_t hi) {
    std::vector<double> batch_mean(dim), m2(dim);
    for (int64_t p = lo; p < hi; ++p) {
      const int64_t c = present[p];
      const int64_t begin = offsets[c], end = offsets[c + 1];
      const int64_t n = end - begin;
      std::fill(batch_mean.begin(), batch_mean.end(), 0.0);
      std::fill(m2.begin(), m2.end(), 0.0);
      for (int64_t r = begin; r < end; ++r) accumulate_row(x + rows[r] * dim, batch_mean.data(), dim);
      const double inv_n = 1.0 / static_cast<double>(n);
      for (int64_t d = 0; d < dim; ++d) batch_mean[d] *= inv_n;
      if (n > 1) {  // exact second pass around the batch mean: no cancellation
        for (int64_t r = begin; r < end; ++r)
          accumulate_sq_dev(x + rows[r] * dim, batch_mean.data(), m2.data(), dim);
      }
      update_class(mu + c * dim, sigma + c * dim, batch_mean.data(), m2.data(), n, dim,
                   seen_p[c] == 0, momentum, momentum_on_var);
      seen_p[c] += 1;
    }
  });
}

}  // namespace

// the op's CPU kernel; its entry point, the argument checks included, is in csrc/op_entries.h
template <>
void segmented_stats_update_kernel_for<at::kCPU>(StatsUpdateArgs args) {
  int64_t* bad = args.nonfinite.has_value() ? args.nonfinite->data_ptr<int64_t>() : nullptr;
  const auto x = args.features.contiguous();
  const auto lab = args.labels.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "segmented_stats_update_cpu", [&] {
        if (lab.scalar_type() == at::kLong) {
          stats_update_cpu_impl<scalar_t, int64_t>(x, lab, args.mean, args.std_, args.seen,
                                                   args.momentum, args.momentum_on_var, bad);
        } else {
          stats_update_cpu_impl<scalar_t, int32_t>(x, lab, args.mean, args.std_, args.seen,
                                                   args.momentum, args.momentum_on_var, bad);
        }
      });
}

TORCH_LIBRARY_IMPL(fasa_fast, CPU, m) {
  m.impl("segmented_stats_update_", &segmented_stats_update_entry<at::kCPU>);
}

}  // namespace fasa_fast
