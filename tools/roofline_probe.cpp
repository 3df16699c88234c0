// This CPU's ceilings for docs/PERFORMANCE.md's roofline (built and run by tools/roofline.py):
// the float32 FMA rate with 12 independent 8-lane accumulators per thread (enough to hide the FMA
// latency of any current x86 or ARM core), and the read bandwidth of a buffer of each size, on 1
// and 2 threads, as native_step.cpp's loops read their weights (32-byte vectors, in order); and what
// an OpenMP barrier, a parallel region of 2 threads and the native step's own barrier cost (its team pays them).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "../sashimi/model/native_step.cpp"  // its `Barrier`, as the team syncs

typedef float V __attribute__((vector_size(32)));

static double seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// GFLOP/s of `threads` threads each running n rounds of 12 independent FMAs on 8 floats.
static double fma_rate(int threads, long n) {
  double best = 1e30;
  for (int rep = 0; rep < 3; ++rep) {
    double start = 0, took = 0;
#pragma omp parallel num_threads(threads)
    {
      V a0 = V{} + 1, a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0, a10 = a0,
        a11 = a0;
      const V m = V{} + 0.999999f, c = V{} + 1e-7f;
#pragma omp barrier
#pragma omp master
      start = seconds();
      for (long k = 0; k < n; ++k) {
        a0 = a0 * m + c; a1 = a1 * m + c; a2 = a2 * m + c; a3 = a3 * m + c; a4 = a4 * m + c; a5 = a5 * m + c;
        a6 = a6 * m + c; a7 = a7 * m + c; a8 = a8 * m + c; a9 = a9 * m + c; a10 = a10 * m + c; a11 = a11 * m + c;
        // keeps the 12 chains in registers and the loop from being folded away
        asm volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7), "+x"(a8),
                     "+x"(a9), "+x"(a10), "+x"(a11));
      }
#pragma omp barrier
#pragma omp master
      took = seconds() - start;
    }
    best = std::min(best, took);
  }
  return threads * n * 12.0 * 8 * 2 / best / 1e9;
}

// GB/s of `threads` threads each reading its own buffer of `bytes` over and over.
static double read_rate(int threads, long bytes) {
  const long n = bytes / sizeof(float), rounds = std::max(1L, (1L << 29) / bytes);
  double best = 1e30;
#pragma omp parallel num_threads(threads)
  {
    std::vector<float> buffer(n, 1.0f);
    V acc[4] = {};
    for (int rep = 0; rep < 3; ++rep) {
      double start = 0;
#pragma omp barrier
#pragma omp master
      start = seconds();
      for (long r = 0; r < rounds; ++r)
        for (long i = 0; i + 32 <= n; i += 32)
          for (int c = 0; c < 4; ++c) {
            V v;
            std::memcpy(&v, &buffer[i + 8 * c], sizeof v);
            acc[c] += v;
          }
#pragma omp barrier
#pragma omp master
      best = std::min(best, seconds() - start);
    }
    asm volatile("" : : "x"(acc[0]), "x"(acc[1]), "x"(acc[2]), "x"(acc[3]));
  }
  return threads * double(rounds) * bytes / best / 1e9;
}

// Microseconds of one OpenMP barrier between 2 threads, of one parallel region of 2 (what the
// native step's team pays per depth call), and of the native step's own barrier (its team's sync).
static void sync_costs() {
  const long n = 200000;
  double start = seconds();
#pragma omp parallel num_threads(2)
  for (long i = 0; i < n; ++i) {
#pragma omp barrier
  }
  const double barrier = (seconds() - start) / n * 1e6;
  start = seconds();
  for (long i = 0; i < n / 10; ++i) {
#pragma omp parallel num_threads(2)
    asm volatile("");
  }
  const double region = (seconds() - start) / (n / 10) * 1e6;
  Barrier native;
  start = seconds();
#pragma omp parallel num_threads(2)
  for (long i = 0; i < n; ++i) native.wait(2);
  std::printf("sync %.3f %.3f %.3f\n", barrier, region, (seconds() - start) / n * 1e6);
}

int main() {
  for (int threads : {1, 2}) std::printf("fma %d %.1f\n", threads, fma_rate(threads, 100000000));
  for (long kib : {16L, 256L, 768L, 3072L, 6144L, 65536L})
    for (int threads : {1, 2}) std::printf("read %ld %d %.1f\n", kib, threads, read_rate(threads, kib * 1024));
  sync_costs();
}
