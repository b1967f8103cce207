// Host emulation of the CUDA execution model, for running the kernels of csrc/cuda/*_device.cuh
// on a machine without a GPU. Include this header before a kernel header; compile with g++
// -std=c++20.
//
// A launch runs as the hardware would run it, one block after another (blocks never share
// memory, so any order of blocks is one the GPU could pick):
// - one host thread per CUDA thread of the block (from a pool kept across blocks), with its own
//   threadIdx / blockIdx / blockDim / gridDim (thread_local);
// - __shared__ variables become static locals placed in one linker section, which is filled
//   with 0xFF bytes (NaN as float, -1 as integer) before every block, so a block never sees
//   what an earlier block left there and a read of a never-written element shows;
// - __syncthreads() is a real barrier over all threads of the block. A barrier that some
//   threads of the block do not reach (a thread returned, or threads wait at two different
//   __syncthreads() calls) fails the launch with a message at once. Every wait at a barrier is
//   bounded by a timeout: a thread that arrives too late fails the launch (one that never
//   finishes, an endless loop, still hangs it, as it would hang the GPU);
// - cub::BlockScan (the only CUB algorithm the kernels use) is a plain publish / barrier / read
//   scan with no trailing barrier, so reusing its TempStorage without a __syncthreads() races as
//   it does with CUB;
// - atomicAdd through std::atomic_ref.
//
// Schedules: kConcurrent lets the threads run freely (the OS interleaves them); kForward and
// kReverse run the threads of a block one at a time between barriers, in increasing or
// decreasing thread order. A missing barrier between a write by one thread and a read by another
// makes the reader see the 0xFF poison (or a stale value) under one of the two serial schedules,
// deterministically.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <semaphore>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};

inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

// CUDA's device min() overloads, for the types the kernels pass.
template <typename T>
constexpr T min(T a, T b) {
  return b < a ? b : a;
}

template <typename T>
T atomicAdd(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}

#define __global__
#define __launch_bounds__(...)
#define __shared__ static __attribute__((section("fasa_emu_shared")))
#define __syncthreads() ::fasa_emu::sync_threads(__FILE__, __LINE__)

// The linker defines these for a section whose name is a C identifier.
extern "C" char __start_fasa_emu_shared[] __attribute__((weak));
extern "C" char __stop_fasa_emu_shared[] __attribute__((weak));

namespace fasa_emu {

enum class Schedule : int { kConcurrent = 0, kForward = 1, kReverse = 2 };

// The shared-memory section is global: one launch at a time.
inline std::mutex launch_mutex;

// Thrown inside an emulated thread to unwind it once its block has failed.
struct Abort {};

inline std::string where(const char* file, int line) {
  const char* slash = std::strrchr(file, '/');
  return std::string(slash ? slash + 1 : file) + ":" + std::to_string(line);
}

// Host threads kept across blocks and launches (creating 1024 threads per block cost ~1 s per
// launch on the 2-core machine). begin(n, job) prepares job(0) .. job(n - 1), start(t) lets
// job(t) run on its own thread, wait() returns when all n have finished.
class Workers {
 public:
  void begin(int n, const std::function<void(int)>& job) {
    while (static_cast<int>(threads_.size()) < n) {
      auto worker = std::make_unique<Worker>();
      const int tid = static_cast<int>(threads_.size());
      worker->thread = std::thread([this, w = worker.get(), tid] { loop(*w, tid); });
      threads_.push_back(std::move(worker));
    }
    job_ = &job;
    remaining_.store(n);
  }

  void start(int t) { threads_[t]->start.release(); }

  void wait() { done_.acquire(); }

 private:
  struct Worker {
    std::binary_semaphore start{0};
    std::thread thread;
  };

  void loop(Worker& self, int tid) {
    for (;;) {
      self.start.acquire();
      (*job_)(tid);
      if (remaining_.fetch_sub(1) == 1) done_.release();
    }
  }

  // Never destroyed: the threads wait on their semaphores until the process exits.
  std::vector<std::unique_ptr<Worker>> threads_;
  const std::function<void(int)>* job_ = nullptr;
  std::atomic<int> remaining_{0};
  std::binary_semaphore done_{0};
};

inline Workers& workers() {
  static Workers* pool = new Workers;
  return *pool;
}

// The threads of one block and the barrier they share.
class Block {
 public:
  Block(int n_threads, Schedule schedule, std::chrono::milliseconds timeout)
      : n_(n_threads), schedule_(schedule), timeout_(timeout), turns_(n_threads),
        exited_flag_(n_threads, false), started_(n_threads, false) {
    for (int t = 0; t < n_; ++t) order_.push_back(schedule == Schedule::kReverse ? n_ - 1 - t : t);
  }

  // Runs `body` once per thread of the block; returns the first failure message, or "".
  std::string run(const std::function<void()>& body, dim3 block_idx, dim3 block_dim,
                  dim3 grid_dim) {
    const std::function<void(int)> job = [&](int tid) {
      threadIdx = dim3(tid % block_dim.x, tid / block_dim.x % block_dim.y,
                       tid / (block_dim.x * block_dim.y));
      blockIdx = block_idx;
      blockDim = block_dim;
      gridDim = grid_dim;
      current_block = this;
      current_tid = tid;
      try {
        {
          const std::lock_guard<std::mutex> lock(mu_);
          if (failed_) return;  // started only to be finished
        }
        body();
        thread_exit(tid);
      } catch (const Abort&) {
      } catch (const std::exception& e) {
        fail(std::string("exception in a kernel thread: ") + e.what());
      }
    };
    workers().begin(n_, job);
    {
      // A serial schedule starts each thread when its first turn comes (see grant).
      const std::lock_guard<std::mutex> lock(mu_);
      if (serial()) {
        grant(0);
      } else {
        for (int tid = 0; tid < n_; ++tid) start_thread(tid);
      }
    }
    workers().wait();
    return error_;
  }

  void sync(const char* file, int line) {
    const int tid = current_tid;
    std::unique_lock<std::mutex> lock(mu_);
    if (failed_) throw Abort{};
    if (exited_ > 0) {
      fail_locked(where(file, line) + ": __syncthreads() reached after " +
                  std::to_string(exited_) + " of " + std::to_string(n_) +
                  " threads returned (a barrier in divergent code)");
      throw Abort{};
    }
    if (arrived_ == 0) {
      site_file_ = file;
      site_line_ = line;
    } else if (site_line_ != line || std::strcmp(site_file_, file) != 0) {
      fail_locked("threads wait at two different __syncthreads(): " +
                  where(site_file_, site_line_) + " and " + where(file, line) +
                  " (a barrier in divergent code)");
      throw Abort{};
    }
    ++arrived_;
    if (serial()) {
      pass_turn();
      wait_turn(lock, tid, file, line);
      return;
    }
    if (arrived_ == n_) {
      release_barrier();
      return;
    }
    const uint64_t generation = generation_;
    if (!barrier_cv_.wait_for(lock, timeout_,
                              [&] { return generation_ != generation || failed_; }))
      fail_locked(where(file, line) + ": __syncthreads() timed out after " +
                  std::to_string(timeout_.count()) + " ms with " + std::to_string(arrived_) +
                  " of " + std::to_string(n_) + " threads arrived");
    if (failed_) throw Abort{};
  }

 private:
  struct Turn {
    std::condition_variable cv;
    bool go = false;
  };

  bool serial() const { return schedule_ != Schedule::kConcurrent; }

  void release_barrier() {
    arrived_ = 0;
    ++generation_;
    barrier_cv_.notify_all();
  }

  void thread_exit(int tid) {
    std::unique_lock<std::mutex> lock(mu_);
    ++exited_;
    exited_flag_[tid] = true;
    if (serial()) {
      pass_turn();
    } else if (arrived_ > 0) {
      fail_locked(where(site_file_, site_line_) + ": a thread returned while " +
                  std::to_string(arrived_) + " of " + std::to_string(n_) +
                  " threads wait at this __syncthreads() (a barrier in divergent code)");
    }
  }

  // Serial schedules: the running thread stopped at a barrier or returned; hand the block to
  // the next live thread in order, or end the phase.
  void pass_turn() {
    int next = pos_ + 1;
    while (next < n_ && exited_flag_[order_[next]]) ++next;
    if (next < n_) {
      grant(next);
      return;
    }
    if (arrived_ == 0) return;  // every thread has returned
    if (exited_ > 0) {
      fail_locked(where(site_file_, site_line_) + ": __syncthreads() reached by " +
                  std::to_string(arrived_) + " of " + std::to_string(n_) + " threads, " +
                  std::to_string(exited_) + " returned (a barrier in divergent code)");
      return;
    }
    release_barrier();
    grant(0);
  }

  void grant(int pos) {
    pos_ = pos;
    const int tid = order_[pos];
    if (!started_[tid]) {
      start_thread(tid);
      return;
    }
    turns_[tid].go = true;
    turns_[tid].cv.notify_one();
  }

  void start_thread(int tid) {
    started_[tid] = true;
    workers().start(tid);
  }

  void wait_turn(std::unique_lock<std::mutex>& lock, int tid, const char* file, int line) {
    Turn& turn = turns_[tid];
    if (!turn.cv.wait_for(lock, timeout_, [&] { return turn.go || failed_; })) {
      fail_locked(where(file, line) + ": thread " + std::to_string(tid) + " timed out after " +
                  std::to_string(timeout_.count()) +
                  " ms waiting for its turn after __syncthreads() (another thread stuck?)");
    }
    if (failed_) throw Abort{};
    turn.go = false;
  }

  void fail(const std::string& message) {
    std::unique_lock<std::mutex> lock(mu_);
    fail_locked(message);
  }

  void fail_locked(const std::string& message) {
    if (!failed_) error_ = message;
    failed_ = true;
    barrier_cv_.notify_all();
    for (auto& turn : turns_) turn.cv.notify_one();
    for (int tid = 0; tid < n_; ++tid)
      if (!started_[tid]) start_thread(tid);  // they return at once: wait() needs them all
  }

  const int n_;
  const Schedule schedule_;
  const std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::condition_variable barrier_cv_;
  std::vector<Turn> turns_;
  std::vector<int> order_;
  std::vector<bool> exited_flag_, started_;
  int pos_ = 0;
  int arrived_ = 0, exited_ = 0;
  uint64_t generation_ = 0;
  const char* site_file_ = "";
  int site_line_ = 0;
  bool failed_ = false;
  std::string error_;

 public:
  static inline thread_local Block* current_block = nullptr;
  static inline thread_local int current_tid = 0;
};

inline void sync_threads(const char* file, int line) { Block::current_block->sync(file, line); }

struct LaunchOptions {
  Schedule schedule = Schedule::kForward;
  std::chrono::milliseconds timeout{20000};
};

// kernel<<<grid, block>>>(args...), blocks one after another; throws std::runtime_error naming
// the failing block.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, const LaunchOptions& options,
            Args... args) {
  const std::lock_guard<std::mutex> guard(launch_mutex);
  const int n_threads = static_cast<int>(block.x * block.y * block.z);
  if (n_threads < 1 || n_threads > 1024)
    throw std::runtime_error("launch: expected 1..1024 threads per block, got " +
                             std::to_string(n_threads));
  const std::function<void()> body = [&] { kernel(static_cast<Params>(args)...); };
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        if (__start_fasa_emu_shared != nullptr)
          std::memset(__start_fasa_emu_shared, 0xFF,
                      static_cast<size_t>(__stop_fasa_emu_shared - __start_fasa_emu_shared));
        Block b(n_threads, options.schedule, options.timeout);
        const std::string error = b.run(body, dim3(bx, by, bz), block, grid);
        if (!error.empty())
          throw std::runtime_error("block (" + std::to_string(bx) + ", " + std::to_string(by) +
                                   ", " + std::to_string(bz) + "): " + error);
      }
}

}  // namespace fasa_emu

namespace cub {

// cub::BlockScan<T, BLOCK_THREADS> with the ExclusiveSum overloads the kernels call. Like
// CUB's warp-scan variant, each thread publishes its partial sum, waits at one barrier and reads
// the others'; there is no barrier at the end.
template <typename T, int kBlockThreads>
class BlockScan {
 public:
  struct TempStorage {
    T partial[kBlockThreads];
  };

  explicit BlockScan(TempStorage& storage) : storage_(storage) {}

  void ExclusiveSum(T input, T& output, T& block_aggregate) {
    const T in[1] = {input};
    T out[1];
    ExclusiveSum(in, out, block_aggregate);
    output = out[0];
  }

  template <int kItems>
  void ExclusiveSum(const T (&input)[kItems], T (&output)[kItems], T& block_aggregate) {
    if (static_cast<int>(blockDim.x * blockDim.y * blockDim.z) != kBlockThreads)
      throw std::runtime_error("cub::BlockScan: built for " + std::to_string(kBlockThreads) +
                               " threads, launched with " +
                               std::to_string(blockDim.x * blockDim.y * blockDim.z));
    const int tid =
        static_cast<int>(threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z));
    T own = 0;
    for (int i = 0; i < kItems; ++i) own += input[i];
    storage_.partial[tid] = own;
    __syncthreads();
    T prefix = 0, total = 0;
    for (int t = 0; t < kBlockThreads; ++t) {
      if (t == tid) prefix = total;
      total += storage_.partial[t];
    }
    for (int i = 0; i < kItems; ++i) {
      output[i] = prefix;
      prefix += input[i];
    }
    block_aggregate = total;
  }

 private:
  TempStorage& storage_;
};

}  // namespace cub
