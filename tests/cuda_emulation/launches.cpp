// The CUDA kernels of csrc/cuda/*_device.cuh, compiled by the host compiler on top of
// emulator.h and exposed as C functions (loaded with ctypes by tests/cuda_emulation/__init__.py).
// Each launch takes its grid and block from csrc/cuda/launch_geometry.h, as the .cu launchers
// do; the host-side preparation (contiguous copies, std -> variance, the empty cases) is
// mirrored in Python. The last section holds small kernels that test the emulator itself.
//
// Every function returns 0, or 1 with the message in fasa_emu_last_error().
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <string>
#include <thread>

#include "emulator.h"

#include "../../csrc/cuda/fisher_distance_device.cuh"
#include "../../csrc/cuda/sample_virtual_features_device.cuh"
#include "../../csrc/cuda/segmented_stats_update_device.cuh"

namespace {

std::string last_error;

fasa_emu::LaunchOptions options(int schedule, int64_t timeout_ms) {
  fasa_emu::LaunchOptions opts;
  opts.schedule = static_cast<fasa_emu::Schedule>(schedule);
  opts.timeout = std::chrono::milliseconds(timeout_ms);
  return opts;
}

template <typename F>
int guarded(F&& launch) {
  try {
    launch();
    return 0;
  } catch (const std::exception& e) {
    last_error = e.what();
    return 1;
  }
}

template <typename scalar_t, typename label_t>
void launch_stats_update(const void* x, const void* labels, float* mean, float* stdev,
                         int64_t* seen, int64_t n_rows, int64_t dim, int64_t n_classes,
                         float momentum, bool momentum_on_var, int64_t* nonfinite,
                         const fasa_emu::LaunchOptions& opts) {
  fasa_emu::launch(fasa_fast::segmented_stats_update_kernel<scalar_t, label_t>,
                   fasa_fast::stats_update_grid(n_classes), fasa_fast::stats_update_block(), opts,
                   static_cast<const scalar_t*>(x), static_cast<const label_t*>(labels), mean,
                   stdev, seen, n_rows, dim, momentum, momentum_on_var, nonfinite);
}

template <typename scalar_t>
void dispatch_labels(int label_type, const void* x, const void* labels, float* mean,
                     float* stdev, int64_t* seen, int64_t n_rows, int64_t dim, int64_t n_classes,
                     float momentum, bool momentum_on_var, int64_t* nonfinite,
                     const fasa_emu::LaunchOptions& opts) {
  if (label_type == 0)
    launch_stats_update<scalar_t, int64_t>(x, labels, mean, stdev, seen, n_rows, dim, n_classes,
                                           momentum, momentum_on_var, nonfinite, opts);
  else
    launch_stats_update<scalar_t, int32_t>(x, labels, mean, stdev, seen, n_rows, dim, n_classes,
                                           momentum, momentum_on_var, nonfinite, opts);
}

// ---- kernels that test the emulator -------------------------------------------------------

// out[i] = in[i - 1] + in[i + 1] (cyclic within the block), through shared memory; without the
// barrier a thread may read a neighbour's slot before the neighbour wrote it.
__global__ void neighbour_sum_kernel(const float* in, float* out, bool barrier) {
  __shared__ float buf[1024];
  const int tid = threadIdx.x, n = blockDim.x;
  buf[tid] = in[blockIdx.x * n + tid];
  if (barrier) __syncthreads();
  out[blockIdx.x * n + tid] = buf[(tid + n - 1) % n] + buf[(tid + 1) % n];
}

// 0: only even threads reach the barrier (odd ones return); 1: two halves wait at two
// different barriers; 2: thread `stalled` sleeps `stall_ms` before the barrier.
__global__ void misused_barrier_kernel(int mode, int stalled, int stall_ms) {
  if (mode == 0) {
    if (threadIdx.x % 2 == 1) return;
    __syncthreads();
  } else if (mode == 1) {
    if (threadIdx.x < blockDim.x / 2) {
      __syncthreads();
    } else {
      __syncthreads();
    }
  } else {
    if (static_cast<int>(threadIdx.x) == stalled)
      std::this_thread::sleep_for(std::chrono::milliseconds(stall_ms));
    __syncthreads();
  }
}

// Every thread writes its indices and the launch shape to its own 8 slots.
__global__ void index_kernel(int* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  int* slot = out + 8 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
  const unsigned values[8] = {threadIdx.x, threadIdx.y, threadIdx.z, blockIdx.x, blockIdx.y,
                              blockIdx.z, blockDim.x * blockDim.y * blockDim.z,
                              gridDim.x * gridDim.y * gridDim.z};
  for (int i = 0; i < 8; ++i) slot[i] = static_cast<int>(values[i]);
}

// Block 0 writes a shared cell, every block reports what it sees there.
__global__ void shared_isolation_kernel(float* out) {
  __shared__ float cell;
  if (blockIdx.x == 0 && threadIdx.x == 0) cell = 42.f;
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = cell;
}

__global__ void atomic_count_kernel(int64_t* counter, int reps) {
  for (int r = 0; r < reps; ++r) atomicAdd(counter, int64_t{1});
}

}  // namespace

#define FASA_EMU_API extern "C" __attribute__((visibility("default")))

FASA_EMU_API const char* fasa_emu_last_error() { return last_error.c_str(); }

FASA_EMU_API int fasa_emu_segmented_stats_update(int scalar_type, int label_type, const void* x,
                                                 const void* labels, float* mean, float* stdev,
                                                 int64_t* seen, int64_t n_rows, int64_t dim,
                                                 int64_t n_classes, float momentum,
                                                 bool momentum_on_var, int64_t* nonfinite,
                                                 int schedule, int64_t timeout_ms) {
  return guarded([&] {
    const auto opts = options(schedule, timeout_ms);
    if (scalar_type == 0)
      dispatch_labels<float>(label_type, x, labels, mean, stdev, seen, n_rows, dim, n_classes,
                             momentum, momentum_on_var, nonfinite, opts);
    else if (scalar_type == 1)
      dispatch_labels<c10::Half>(label_type, x, labels, mean, stdev, seen, n_rows, dim,
                                 n_classes, momentum, momentum_on_var, nonfinite, opts);
    else
      dispatch_labels<c10::BFloat16>(label_type, x, labels, mean, stdev, seen, n_rows, dim,
                                     n_classes, momentum, momentum_on_var, nonfinite, opts);
  });
}

FASA_EMU_API int fasa_emu_fisher_distance(const float* mean, const float* var, float* out,
                                          int64_t n_classes, int64_t dim, float eps,
                                          int schedule, int64_t timeout_ms) {
  return guarded([&] {
    fasa_emu::launch(fasa_fast::fisher_distance_kernel, fasa_fast::fisher_distance_grid(n_classes),
                     fasa_fast::fisher_distance_block(), options(schedule, timeout_ms), mean, var,
                     out, n_classes, dim, eps);
  });
}

FASA_EMU_API int fasa_emu_select_classes(const int64_t* seen, const float* prob,
                                         const int64_t* key, int64_t* rng_state, int32_t* slot_class,
                                         int32_t* slot_replica, int64_t* counts,
                                         int64_t n_classes, int64_t k, int64_t capacity,
                                         int schedule, int64_t timeout_ms) {
  return guarded([&] {
    fasa_emu::launch(fasa_fast::select_classes_kernel, fasa_fast::select_classes_grid(),
                     fasa_fast::select_classes_block(), options(schedule, timeout_ms), seen, prob, key, rng_state, slot_class,
                     slot_replica, counts, n_classes, k, capacity);
  });
}

FASA_EMU_API int fasa_emu_fill_rows(const float* mean, const float* stdev, const int64_t* key,
                                    const int64_t* rng_state, const int32_t* slot_class,
                                    const int32_t* slot_replica, float* out, int64_t* labels,
                                    int64_t dim, int64_t capacity, int schedule,
                                    int64_t timeout_ms) {
  return guarded([&] {
    fasa_emu::launch(fasa_fast::fill_rows_kernel, fasa_fast::fill_rows_grid(capacity),
                     fasa_fast::fill_rows_block(), options(schedule, timeout_ms), mean, stdev,
                     key, rng_state, slot_class, slot_replica, out, labels, dim);
  });
}

FASA_EMU_API int fasa_emu_neighbour_sum(const float* in, float* out, int blocks, int threads,
                                        bool barrier, int schedule, int64_t timeout_ms) {
  return guarded([&] {
    fasa_emu::launch(neighbour_sum_kernel, dim3(blocks), dim3(threads),
                     options(schedule, timeout_ms), in, out, barrier);
  });
}

FASA_EMU_API int fasa_emu_misused_barrier(int mode, int threads, int stalled, int stall_ms,
                                          int schedule, int64_t timeout_ms) {
  return guarded([&] {
    fasa_emu::launch(misused_barrier_kernel, dim3(1), dim3(threads),
                     options(schedule, timeout_ms), mode, stalled, stall_ms);
  });
}

FASA_EMU_API int fasa_emu_index(int* out, const unsigned* grid, const unsigned* block,
                                int schedule, int64_t timeout_ms) {
  return guarded([&] {
    fasa_emu::launch(index_kernel, dim3(grid[0], grid[1], grid[2]),
                     dim3(block[0], block[1], block[2]), options(schedule, timeout_ms), out);
  });
}

FASA_EMU_API int fasa_emu_shared_isolation(float* out, int blocks, int threads, int schedule,
                                           int64_t timeout_ms) {
  return guarded([&] {
    fasa_emu::launch(shared_isolation_kernel, dim3(blocks), dim3(threads),
                     options(schedule, timeout_ms), out);
  });
}

FASA_EMU_API int fasa_emu_atomic_count(int64_t* counter, int blocks, int threads, int reps,
                                       int schedule, int64_t timeout_ms) {
  return guarded([&] {
    fasa_emu::launch(atomic_count_kernel, dim3(blocks), dim3(threads),
                     options(schedule, timeout_ms), counter, reps);
  });
}
