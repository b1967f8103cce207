// Launch geometry of the CUDA kernels (block sizes, grids), in one place for the launchers
// (csrc/cuda/<op>_launch.cu), the kernels that size their loops and shared memory by it
// (csrc/cuda/<op>_device.cuh) and the host emulation of the tests (tests/cuda_emulation/),
// which launches the same kernels with the same geometry. Plain host C++ on top of a dim3:
// CUDA's, or the emulator's.
#pragma once
#include <cstdint>

namespace fasa_fast {

// ---- segmented_stats_update_: one block per class -------------------------------------------
constexpr int kThreads = 256;  // threads per block; each owns one feature of a D tile

inline dim3 stats_update_grid(int64_t n_classes) { return dim3(static_cast<unsigned>(n_classes)); }
inline dim3 stats_update_block() { return dim3(kThreads); }

// ---- fisher_distance: one block per kTile x kTile tile of class pairs -------------------------
constexpr int kTile = 32;  // classes per tile side
constexpr int kRowsPerThread = 4;  // rows of its tile column each thread computes

inline dim3 fisher_distance_grid(int64_t n_classes) {
  const auto tiles = static_cast<unsigned>((n_classes + kTile - 1) / kTile);
  return dim3(tiles, tiles);
}
inline dim3 fisher_distance_block() { return dim3(kTile, kTile / kRowsPerThread); }

// ---- sample_virtual_features: one block selects the classes, then one block per output row ---
constexpr int kSelectThreads = 1024;
constexpr int kFillThreads = 256;

inline dim3 select_classes_grid() { return dim3(1); }
inline dim3 select_classes_block() { return dim3(kSelectThreads); }
inline dim3 fill_rows_grid(int64_t capacity) { return dim3(static_cast<unsigned>(capacity)); }
inline dim3 fill_rows_block() { return dim3(kFillThreads); }

}  // namespace fasa_fast
