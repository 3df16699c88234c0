// The Cauchy sums of the S4 kernel (sashimi/model/cauchy.py, `cauchy_pairs`) in one fused loop:
// for each channel and vector of frequencies, 1 / Q' of every state pair is computed in registers
// and summed into the eight (X, Y) sums at once, where the PyTorch form writes (H, N2, F) arrays of
// 1 / Q' chunk by chunk and multiplies them by W in a small batched GEMM (M = 8): on a CPU, that
// form spends most of the forward pass moving those arrays. Built into the native library with the
// step (native.py); its oracle is the PyTorch form (tests/model/test_cauchy.py).
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include <omp.h>

namespace {

template <typename T>
struct Lanes {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int64_t n = 32 / sizeof(T);
};

template <typename V, typename T>
inline V vload(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The sums of one channel h and vector of frequencies [f, f + L): sums[2 k] and sums[2 k + 1] the
// real and imaginary parts of sum_n W[h, k, n] / Q'[h, n, f], Q' = M c^2 - 4 s^2 + i R4 s c.
// 1 / Q' of every state pair is computed once into q (in L1), then the eight sums in two halves of
// four: eight accumulators stay in the 16 vector registers of AVX2, all sixteen would not.
template <typename T, typename V>
void pair_sums(const T* W, const T* R4, const T* M, V s, V c, int64_t h, int64_t N2, V* q, V* sums) {
  constexpr int64_t K = 8;
  const V c2 = c * c, sc = s * c, m4s2 = T(-4) * s * s;
  for (int64_t n = 0; n < N2; ++n) {
    const V Qr = m4s2 + M[h * N2 + n] * c2, Qi = R4[h * N2 + n] * sc;
    const V d = T(1) / (Qr * Qr + Qi * Qi);
    q[2 * n] = Qr * d;
    q[2 * n + 1] = Qi * d;
  }
  for (int64_t k0 = 0; k0 < K; k0 += 4) {  // mutate: skip K - 1: k0 is 0 or 4, below 7 as below 8
    V r0 = V{}, r1 = V{}, r2 = V{}, r3 = V{}, i0 = V{}, i1 = V{}, i2 = V{}, i3 = V{};
    const T* w = W + (h * K + k0) * N2;
    for (int64_t n = 0; n < N2; ++n) {
      const V qr = q[2 * n], qi = q[2 * n + 1];
      r0 += w[n] * qr;
      i0 += w[n] * qi;
      r1 += w[N2 + n] * qr;
      i1 += w[N2 + n] * qi;
      r2 += w[2 * N2 + n] * qr;
      i2 += w[2 * N2 + n] * qi;
      r3 += w[3 * N2 + n] * qr;
      i3 += w[3 * N2 + n] * qi;
    }
    V* out = sums + 2 * k0;
    out[0] = r0, out[1] = i0, out[2] = r1, out[3] = i1, out[4] = r2, out[5] = i2, out[6] = r3, out[7] = i3;
  }
}

// `_woodbury` on one vector of frequencies: rho_k = i s X_k + (c/2) Y_k (X_k sums k, Y_k sums 4 + k),
// D = 1 + c rho_3, t = rho_1 rho_2 / D, K^ = (c + i s) (rho_0 - c t); writes (Re, Im) of K^.
template <typename V>
void woodbury(const V* sums, V s, V c, V* re, V* im) {
  V rr[4], ri[4];  // mutate: skip a larger array: nothing reads past 4
  for (int k = 0; k < 4; ++k) {
    rr[k] = c / 2 * sums[2 * (4 + k)] - s * sums[2 * k + 1];
    ri[k] = s * sums[2 * k] + c / 2 * sums[2 * (4 + k) + 1];
  }
  const V dr = 1 + c * rr[3], di = c * ri[3];
  const V nr = rr[1] * rr[2] - ri[1] * ri[2], ni = rr[1] * ri[2] + ri[1] * rr[2];  // rho_1 rho_2
  const V norm = dr * dr + di * di;
  const V tr = (nr * dr + ni * di) / norm, ti = (ni * dr - nr * di) / norm;  // / D
  const V ar = rr[0] - c * tr, ai = ri[0] - c * ti;
  *re = c * ar - s * ai;
  *im = c * ai + s * ar;
}

// response false: out (H, 8, 2, F) the sums (`cauchy_pairs_plain`); true: out (H, F, 2) K^ (`_woodbury`).
template <typename T>
void cauchy(const T* W, const T* R4, const T* M, const T* s, const T* c, T* out, int64_t H, int64_t N2, int64_t F,
            bool response, int threads) {
  using V = typename Lanes<T>::type;
  constexpr int64_t L = Lanes<T>::n;
  std::vector<std::vector<V>> scratch(threads, std::vector<V>(2 * N2));
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (int64_t h = 0; h < H; ++h) {
    V* q = scratch[omp_get_thread_num()].data();
    for (int64_t f = 0; f < F; f += L) {
      const int64_t width = std::min(L, F - f);
      T sf[L], cf[L];
      for (int64_t i = 0; i < L; ++i) {  // past F: s = 0, c = 1 (a finite Q' = M; discarded)
        sf[i] = i < width ? s[f + i] : T(0);  // mutate: skip <=: lane `width` is padding, discarded
        cf[i] = i < width ? c[f + i] : T(1);  // mutate: skip <=: lane `width` is padding, discarded
      }
      const V sv = vload<V>(sf), cv = vload<V>(cf);
      V sums[16];  // mutate: skip a larger array: nothing reads past 16
      pair_sums(W, R4, M, sv, cv, h, N2, q, sums);
      T lanes[2][L];  // mutate: skip a larger array: nothing reads past 2
      if (response) {
        V re, im;
        woodbury(sums, sv, cv, &re, &im);
        std::memcpy(lanes[0], &re, sizeof lanes[0]);
        std::memcpy(lanes[1], &im, sizeof lanes[1]);
        for (int64_t i = 0; i < width; ++i) {
          out[(h * F + f + i) * 2] = lanes[0][i];
          out[(h * F + f + i) * 2 + 1] = lanes[1][i];
        }
        continue;
      }
      for (int64_t k = 0; k < 8; ++k)
        for (int64_t part = 0; part < 2; ++part) {  // real, imaginary
          std::memcpy(lanes[0], &sums[2 * k + part], sizeof lanes[0]);
          std::copy_n(lanes[0], width, out + ((h * 8 + k) * 2 + part) * F + f);
        }
    }
  }
}

}  // namespace

extern "C" {
// W (H, 8, N2), R4 and M (H, N2), s and c (F); out (H, 8, 2, F), or with response (H, F, 2);
// double_precision: 0 float32, 1 float64
void sashimi_cauchy(int double_precision, const void* W, const void* R4, const void* M, const void* s, const void* c,
                    void* out, int64_t H, int64_t N2, int64_t F, int response, int threads) {
  if (double_precision)
    cauchy(static_cast<const double*>(W), static_cast<const double*>(R4), static_cast<const double*>(M),
           static_cast<const double*>(s), static_cast<const double*>(c), static_cast<double*>(out), H, N2, F,
           response != 0, threads);
  else
    cauchy(static_cast<const float*>(W), static_cast<const float*>(R4), static_cast<const float*>(M),
           static_cast<const float*>(s), static_cast<const float*>(c), static_cast<float*>(out), H, N2, F,
           response != 0, threads);
}
}
