// CPU kernel of fasa_fast::fisher_distance: d_ij = mean_k (mu_ik - mu_jk)^2 /
// (sigma_ik^2 + sigma_jk^2 + eps). Only the upper triangle is computed (the matrix is
// symmetric with a zero diagonal), in square tiles of classes so that both tiles' rows stay in
// cache, parallel over row tiles. Nothing of size C x C x D exists at any time.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"

namespace fasa_fast {
namespace {

constexpr int64_t kTile = 16;
constexpr int kLanes = 16;

// One pair of classes: sum over d. Independent partial sums let the compiler vectorise the
// loop without reassociating floating point; on x86-64 an AVX2 clone is picked at load time.
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target_clones("avx2", "default")))
#endif
float fisher_pair_sum(const float* __restrict__ mu_i, const float* __restrict__ var_i,
                      const float* __restrict__ mu_j, const float* __restrict__ var_j,
                      int64_t dim, float eps) {
  float acc[kLanes] = {0.f};
  int64_t d = 0;
  for (; d + kLanes <= dim; d += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      const float diff = mu_i[d + l] - mu_j[d + l];
      acc[l] += diff * diff / (var_i[d + l] + var_j[d + l] + eps);
    }
  }
  for (; d < dim; ++d) {
    const float diff = mu_i[d] - mu_j[d];
    acc[0] += diff * diff / (var_i[d] + var_j[d] + eps);
  }
  float total = 0.f;
  for (int l = 0; l < kLanes; ++l) total += acc[l];
  return total;
}

at::Tensor fisher_distance_cpu(const at::Tensor& mean, const at::Tensor& std_, double eps) {
  check_fisher_args(mean, std_, eps, at::kCPU);
  const int64_t n_classes = mean.size(0);
  const int64_t dim = mean.size(1);
  auto out = at::zeros({n_classes, n_classes}, mean.options());
  if (n_classes == 0) return out;
  const auto mu = mean.contiguous();
  const auto var = std_.square().contiguous();
  const float* mu_p = mu.const_data_ptr<float>();
  const float* var_p = var.const_data_ptr<float>();
  float* out_p = out.data_ptr<float>();
  const float feps = static_cast<float>(eps);
  const float inv_dim = 1.0f / static_cast<float>(dim);
  const int64_t n_tiles = (n_classes + kTile - 1) / kTile;
  // Tile rows are handed out one at a time: the triangle makes early rows the most expensive.
  at::parallel_for(0, n_tiles, 1, [&](int64_t lo, int64_t hi) {
    for (int64_t ti = lo; ti < hi; ++ti) {
      const int64_t i0 = ti * kTile, i1 = std::min(n_classes, i0 + kTile);
      for (int64_t j0 = i0; j0 < n_classes; j0 += kTile) {
        const int64_t j1 = std::min(n_classes, j0 + kTile);
        for (int64_t i = i0; i < i1; ++i) {
          for (int64_t j = std::max(j0, i + 1); j < j1; ++j) {
            const float v = inv_dim * fisher_pair_sum(mu_p + i * dim, var_p + i * dim,
                                                      mu_p + j * dim, var_p + j * dim, dim, feps);
            out_p[i * n_classes + j] = v;
            out_p[j * n_classes + i] = v;
          }
        }
      }
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fasa_fast, CPU, m) { m.impl("fisher_distance", &fisher_distance_cpu); }

}  // namespace fasa_fast
