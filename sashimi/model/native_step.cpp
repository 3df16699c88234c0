// The fused step (sashimi/model/fused.py) as one native call per sample: the same numbers as
// `depth_step` and `FusedStep.step`, computed by plain loops over the packed weights, with no
// operator dispatch between them. A plain shared library (no torch headers: it builds in about a
// second), built by sashimi/model/native.py at first use and called through ctypes; its oracles
// are the Python fused step and the modules' own step (tests/model/test_native.py).
//
// Each depth is described by a program of int64 fields (written by native.py's `program`):
// the header, then one record of BLOCK fields per residual block; offsets index the depth's
// flat weight tensor, -1 marks an absent part. Rows of the batch are independent, so threads
// split the rows and each runs the whole depth on its own.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <numeric>
#include <thread>
#include <type_traits>
#include <vector>

#include <omp.h>

namespace {

// header fields
enum { H_, EMB, DOWN_W, DOWN_B, DOWN_IN, UP_W, UP_B, UP_OUT, DEC_W, DEC_B, N_CLASSES,
       FNORM, FNORM_1, FNORM_2, FNORM_EPS, N_BLOCKS, HEADER };
// block fields: kind (0 S4, 1 feed-forward), its norm (kind, two slots, eps index), then
// S4: the recurrence's coefficients (interleaved: `recurrence`), 9 unused, D W b out glu;
// feed-forward: W1 b1 W2 b2 hidden
enum { KIND, NORM, NORM_1, NORM_2, NORM_EPS, P0 };
constexpr int BLOCK = 20;
enum { NORM_NONE = 0, NORM_LAYER = 1, NORM_SCALAR = 2 };

// Vectors of 32 bytes (8 floats, 4 doubles) by GCC/Clang vector extensions: AVX on x86, pairs
// of NEON registers on ARM; loads and stores through memcpy, which compiles to unaligned moves.
template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(32)));
  static constexpr int lanes = 32 / sizeof(T);
};
template <typename T>
inline typename Vec<T>::type load(const T* p) {
  typename Vec<T>::type v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
inline void store(T* p, typename Vec<T>::type v) { std::memcpy(p, &v, sizeof v); }

// Float vectors and their bits, for the vectorized exp below.
typedef Vec<float>::type VF;
typedef int32_t VI __attribute__((vector_size(32)));

// exp of 8 floats at once: Cephes' expf (range reduction by ln 2, rounding by the 1.5 * 2^23
// trick, a degree-5 polynomial, 2^n from the exponent bits), within 2 ulp over [-87, 88].
inline VF exp_vec(VF x) {
  const VF lo = VF{} - 87.0f, hi = VF{} + 88.0f, magic = VF{} + 12582912.0f;
  x = x < lo ? lo : x;  // mutate: skip <=: at x == lo both give lo
  x = x > hi ? hi : x;  // mutate: skip >=: at x == hi both give hi
  const VF n = (x * 1.44269504088896341f + magic) - magic;
  const VF r = x - n * 0.693359375f + n * 2.12194440e-4f;
  VF p = VF{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const VI bits = (__builtin_convertvector(n, VI) + 127) << 23;
  return (p * r * r + r + 1.0f) * (VF)bits;
}

// exp of 4 doubles, for the draw's weights (x = z - max z <= 0): x = n ln 2 + r with |r| <= ln 2 / 2
// (ln 2 in Cephes' two parts), exp r by its Taylor series to r^13 / 13! (the next term is about
// 4e-18 of it), 2^n from the exponent bits: within a few ulp of std::exp. Below -708 (subnormal
// results, 0 past -745, -inf, NaN) a lane is std::exp's own.
typedef Vec<double>::type VD;
typedef int64_t VL __attribute__((vector_size(32)));
inline VD exp_draw(VD x) {
  // 1.5 * 2^52: adding it rounds to an integer
  const VD lo = VD{} - 708.0, magic = VD{} + 6755399441055744.0;  // mutate: skip +708: every lane std::exp's
  const VD safe = x >= lo ? x : lo;  // mutate: skip >: at x == lo both are lo
  const VD n = (safe * 1.4426950408889634 + magic) - magic;
  const VD r = safe - n * 0.693145751953125 - n * 1.42860682030941723212e-6;
  constexpr double factorial[14] = {  // mutate: skip a larger array: 13 is the last read
                                     1.0, 1.0, 2.0, 6.0, 24.0, 120.0, 720.0, 5040.0, 40320.0, 362880.0,
                                     3628800.0, 39916800.0, 479001600.0, 6227020800.0};
  VD p = VD{} + 1.0 / factorial[13];
  for (int k = 12; k >= 0; --k) p = p * r + 1.0 / factorial[k];  // Horner: sum of r^k / k!
  VD e = p * (VD)((__builtin_convertvector(n, VL) + 1023) << 52);
  for (int i = 0; i < 4; ++i)
    if (!(x[i] >= lo[i])) e[i] = std::exp(x[i]);  // mutate: skip >: at lo the series is within 1 ulp of it
  return e;
}

// F.gelu's exact form, 0.5 x (1 + erf(x / sqrt 2)), with erf as PyTorch's own vectorized GELU
// computes it in float (Abramowitz & Stegun 7.1.26, absolute error under 1.5e-7).
inline VF gelu_vec(VF x) {
  const VF z = x * float(M_SQRT1_2);
  const VF a = (VF)((VI)z & 0x7fffffff);
  const VF t = 1.0f / (1.0f + 0.3275911f * a);
  const VF poly = t * (0.254829592f + t * (-0.284496736f + t * (1.421413741f + t * (-1.453152027f + t * 1.061405429f))));
  const VF e = 1.0f - poly * exp_vec(-a * a);
  const VF erf = (VF)((VI)e | ((VI)z & int32_t(0x80000000)));
  return 0.5f * x * (1.0f + erf);
}

// f over v[0:n] in place, 8 floats at a time (the last few through a zero-padded vector).
template <typename F>
void map_float(float* v, int64_t n, F f) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) store(v + i, f(load(v + i)));  // mutate: skip one early: the tail gives the same
  if (i < n) {  // mutate: skip i <= n: an empty tail writes nothing
    float tail[8] = {};  // mutate: skip a larger array: the vector reads its first 8
    std::copy_n(v + i, n - i, tail);
    store(tail, f(load(tail)));
    std::copy_n(tail, n - i, v + i);
  }
}

// GELU in place: in float the vectorized form above; in double std::erf (the float64 path is the
// oracle's precision, not a speed path).
template <typename T>
void gelu(T* v, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    map_float(v, n, gelu_vec);
  } else {
    for (int64_t i = 0; i < n; ++i) v[i] = T(0.5) * v[i] * (T(1) + std::erf(v[i] * T(M_SQRT1_2)));
  }
}

// GLU's gate in place: v = 1 / (1 + exp(-v)).
template <typename T>
void sigmoid(T* v, int64_t n) {
  if constexpr (std::is_same_v<T, float>) {
    map_float(v, n, [](VF x) { return 1.0f / (1.0f + exp_vec(-x)); });
  } else {
    for (int64_t i = 0; i < n; ++i) v[i] = T(1) / (T(1) + std::exp(-v[i]));
  }
}

// y[r] = W x[r] + b, W (out, in) stored packed by native.py's `Packed`: in tiles of TILE outputs
// (4 vectors), each tile's (in, TILE) block contiguous (W transposed, zero past `out`), so that
// a tile streams its weights in order. The accumulators for R rows x 4 vectors stay in registers
// over the whole input; each weight vector loaded serves all R rows.
template <typename T>
constexpr int64_t TILE = 4 * Vec<T>::lanes;

template <typename T, int R>
void linear_tile(const T* block, const T* b, const T* x, T* y, int64_t in, int64_t out, int64_t o) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::lanes;
  constexpr int64_t W = TILE<T>;
  const int64_t valid = std::min(W, out - o);
  T bias[W] = {}, result[R][W];
  std::copy_n(b + o, valid, bias);
  V acc[R][4];  // mutate: skip a larger array: nothing reads its extra vector
  for (int c = 0; c < 4; ++c)
    for (int r = 0; r < R; ++r) acc[r][c] = load(bias + c * L);
  for (int64_t i = 0; i < in; ++i) {
    V w[4];  // mutate: skip as above
    for (int c = 0; c < 4; ++c) w[c] = load(block + i * W + c * L);
    for (int r = 0; r < R; ++r) {
      const V xi = V{} + x[r * in + i];
      for (int c = 0; c < 4; ++c) acc[r][c] += xi * w[c];
    }
  }
  for (int r = 0; r < R; ++r) {
    T* dst = valid == W ? y + r * out + o : result[r];
    for (int c = 0; c < 4; ++c) store(dst + c * L, acc[r][c]);
    if (valid < W) std::copy_n(result[r], valid, y + r * out + o);
  }
}

// A team's barrier: the last thread to arrive opens the next generation; the others spin on it,
// then yield (more threads than cores, or a core taken by another process). 0.08-0.40 us on two
// cores of a Zen 4 EPYC where OpenMP's own barrier takes 0.26-0.52 us (`python tools/roofline.py`,
// minutes apart): a depth syncs twice a block. The counter's acquire-release and the generation's
// release-acquire publish every write made before a thread arrived to every thread that leaves.
struct Barrier {
  alignas(64) std::atomic<int> count{0};
  alignas(64) std::atomic<int> generation{0};
  void wait(int threads) {
    const int g = generation.load(std::memory_order_relaxed);
    if (count.fetch_add(1, std::memory_order_acq_rel) == threads - 1) {
      count.store(0, std::memory_order_relaxed);
      generation.store(g + 1, std::memory_order_release);  // mutate: skip -: any new value releases the waiters
      return;
    }
    for (int spins = 0; generation.load(std::memory_order_acquire) == g; ++spins)
      if (spins > 4096) std::this_thread::yield();  // mutate: skip a speed rule: any count waits as long
  }
};

// The threads that run one depth together. Alone (size 1), a thread runs its rows' whole depth.
// As a team (a batch smaller than the threads: at B = 1 the second core would idle), every thread
// computes the cheap per-row steps (norms, residual adds) itself, in the same order, and the work
// is shared: tile k of every linear's outputs is computed by thread k % size, the recurrence's
// channels are split in ranges, and `sync` (a barrier) publishes each thread's part before anyone
// reads the whole. Every number is computed by the same code as alone: the results are identical.
struct Team {
  int id = 0, size = 1;
  Barrier* barrier = nullptr;
  bool owns(int64_t tile) const { return tile % size == id; }
  int64_t first(int64_t n) const { return n * id / size; }  // this thread's part [first, first of the next)
  int64_t end(int64_t n) const { return n * (id + 1) / size; }
  void sync() const {
    if (size > 1) barrier->wait(size);  // mutate: skip >=: alone, a barrier waits for no one
  }
};

// Rows of the batch per register tile of a linear: each weight vector loaded serves them all. The
// tile's R x 4 accumulators, 4 weights and a broadcast must stay in registers: 6 rows (29 vectors)
// with AVX-512's 32, 2 rows (13) with AVX2's or NEON's 16 (a Vec is two NEON registers).
#if defined(__AVX512VL__)
constexpr int TILE_ROWS = 6;  // mutate: skip a speed rule: any rows a tile give each row's numbers alone
#else
constexpr int TILE_ROWS = 2;  // mutate: skip a speed rule, as above
#endif

template <typename T>
void linear(const T* Wp, const T* b, const T* x, T* y, int64_t rows, int64_t in, int64_t out, const Team& team) {
  constexpr int64_t W = TILE<T>;
  for (int64_t o = 0; o < out; o += W) {
    if (!team.owns(o / W)) continue;
    const T* block = Wp + o * in;  // tile o / W starts after o / W blocks of in x W
    int64_t r = 0;
    for (; r + TILE_ROWS <= rows; r += TILE_ROWS)  // mutate: skip a speed rule: the pairs below take the rest
      linear_tile<T, TILE_ROWS>(block, b, x + r * in, y + r * out, in, out, o);
    for (; r + 2 <= rows; r += 2) linear_tile<T, 2>(block, b, x + r * in, y + r * out, in, out, o);
    if (r < rows) linear_tile<T, 1>(block, b, x + r * in, y + r * out, in, out, o);
  }
}

// f(start, count) over the part of [lo, hi) of each row (width `out`) in the tiles this thread owns:
// an activation applied by the thread that computed those outputs, before they are published.
template <typename T, typename F>
void owned(const Team& team, int64_t rows, int64_t out, int64_t lo, int64_t hi, F f) {
  constexpr int64_t W = TILE<T>;
  for (int64_t o = 0; o < out; o += W) {
    const int64_t a = std::max(lo, o), e = std::min(hi, o + W);
    if (!team.owns(o / W) || a >= e) continue;  // mutate: skip >: f of an empty part does nothing
    for (int64_t r = 0; r < rows; ++r) f(r * out + a, e - a);
  }
}

// `apply_norm` on rows of width H: LayerNorm (weight, bias, eps) or the pipeline's ScalarNorm
// (s / sigma) (x - mu + m), sigma the population standard deviation without an epsilon.
template <typename T>
void norm(const T* w, int kind, int64_t slot1, int64_t slot2, double eps, const T* x, T* y,
          int64_t rows, int64_t H) {
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * H;
    T* yr = y + r * H;
    T mean = 0;
    for (int64_t h = 0; h < H; ++h) mean += xr[h];
    mean /= T(H);
    T var = 0;
    for (int64_t h = 0; h < H; ++h) var += (xr[h] - mean) * (xr[h] - mean);
    var /= T(H);
    if (kind == NORM_LAYER) {
      const T inv = T(1) / std::sqrt(var + T(eps));
      for (int64_t h = 0; h < H; ++h) yr[h] = (xr[h] - mean) * inv * w[slot1 + h] + w[slot2 + h];
    } else {
      const T m = w[slot1], scale = w[slot2] / std::sqrt(var);
      for (int64_t h = 0; h < H; ++h) yr[h] = scale * (xr[h] - mean + m);
    }
  }
}

// the ten coefficients of a state entry, in the order native.py packs them (`Packed.recurrence`)
enum { AR, AI, BR, BI, GR, GI, MR, MI, CR, CI, COEFFICIENTS };

// R rows of one vector of channels b at once: each coefficient loaded serves the R rows, whose sums
// (m, out) are independent chains (one row's chain waits on its adds); each row's sums run over n in
// the same order as alone, so a row's numbers do not depend on its neighbours.
template <typename T, int R>
void recurrence_rows(const T* c, const T* u, T* const* states, T* y, int64_t H, int64_t N2, int64_t b) {
  using V = typename Vec<T>::type;
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t h = b * L, width = std::min(L, H - h);
  T* state[R];
  V v[R], m[R], out[R];
  for (int r = 0; r < R; ++r) {
    state[r] = states[r] + b * N2 * 2 * L;
    T padded[L] = {};  // mutate: skip a larger array: the vector reads its first L
    std::copy_n(u + r * H + h, width, padded);
    v[r] = load(padded);
    m[r] = out[r] = V{};
  }
  for (int64_t n = 0; n < N2; ++n) {
    const T* cn = c + n * COEFFICIENTS * L;
    const V mr = load(cn + MR * L), mi = load(cn + MI * L);
    for (int r = 0; r < R; ++r) {
      const T* sn = state[r] + n * 2 * L;
      m[r] += load(sn) * mr + load(sn + L) * mi;
    }
  }
  for (int64_t n = 0; n < N2; ++n) {
    const T* cn = c + n * COEFFICIENTS * L;
    const V ar = load(cn + AR * L);  // mutate: skip -: AR is 0
    const V ai = load(cn + AI * L), br = load(cn + BR * L), bi = load(cn + BI * L);
    const V gr = load(cn + GR * L), gi = load(cn + GI * L), cr = load(cn + CR * L), ci = load(cn + CI * L);
    for (int r = 0; r < R; ++r) {
      T* sn = state[r] + n * 2 * L;
      const V re = load(sn), im = load(sn + L);
      const V xr = ar * re - ai * im + br * v[r] - gr * m[r];
      const V xi = ar * im + ai * re + bi * v[r] - gi * m[r];
      store(sn, xr);
      store(sn + L, xi);
      out[r] += xr * cr + xi * ci;
    }
  }
  for (int r = 0; r < R; ++r) {
    T padded[L];
    store(padded, out[r]);
    std::copy_n(padded, width, y + r * H + h);
  }
}

// `s4_recurrence` for `rows` rows over the vectors of channels [b0, b1): x' = a x + b u - g (m . x),
// y = c . x'. native.py packs the ten coefficients (a, b, g, m, c, real and imaginary) of each vector
// of L channels as (N2, 10, L), and each row keeps its state as (vectors, N2, 2, L), channels padded
// with zeros to whole vectors: a vector of channels reads its coefficients (10 KB in float) and its
// state in one run each, in order, with m . x and y summed over n in registers and no horizontal
// sums; the coefficients then serve every row from L1. Writes y's channels of [b0, b1) only.
template <typename T>
void recurrence(const T* w, const int64_t* f, const T* u, T* const* states, T* y, int64_t rows, int64_t H,
                int64_t N2, int64_t b0, int64_t b1) {
  constexpr int64_t L = Vec<T>::lanes;
  for (int64_t b = b0; b < b1; ++b) {
    const T* c = w + f[0] + b * N2 * COEFFICIENTS * L;
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4)  // mutate: skip a speed rule: single rows below take the rest
      recurrence_rows<T, 4>(c, u + r * H, states + r, y + r * H, H, N2, b);
    for (; r < rows; ++r) recurrence_rows<T, 1>(c, u + r * H, states + r, y + r * H, H, N2, b);
  }
}

// What a team's threads write for each other: two sets, used by alternate blocks, so that a thread
// already writing block i + 1's outputs never overwrites what another still reads of block i's
// (each block syncs at least once, so no thread is two blocks ahead of another's reads).
template <typename T>
struct Shared {
  std::vector<T> y[2], wide[2];  // mutate: skip a larger array: blocks use sets i % 2
};

// The widest linear output of a depth (an S4 block's GLU doubles H; a feed-forward's hidden width).
inline int64_t widest(const std::vector<int64_t>& p) {
  int64_t widest = 2 * p[H_];  // mutate: skip a floor only: wide's writers are the blocks' widths, in the max
  for (int64_t i = 0; i < p[N_BLOCKS]; ++i) {
    const int64_t* f = &p[HEADER + i * BLOCK];
    widest = std::max(widest, f[KIND] == 0 ? f[P0 + 13] : f[P0 + 4]);  // mutate: skip !=: an offset, wider still
  }
  return widest;
}

// One depth for rows [r0, r1): `depth_step`. source: tokens (depth 0) or the finer depth's
// DownPool buffer (B, DOWN_IN); pending (B, H) or null; states (B, S, vectors, N2, 2, L) as
// `recurrence` keeps them; writes x (the
// depth's input, B x H) and out (logits B x C, or the UpPool's output B x UP_OUT). A team's
// threads share `shared` (null when alone: the buffers are the thread's own).
template <typename T>
void depth(const std::vector<int64_t>& p, const std::vector<double>& eps, const T* w,
           const int64_t* tokens, const T* source, const T* pending, T* states, T* x, T* out,
           int64_t r0, int64_t r1, int64_t N2, const Team& team, Shared<T>* shared) {
  const int64_t H = p[H_], rows = r1 - r0, S = p[N_BLOCKS];
  int64_t n_s4 = 0;
  for (int64_t i = 0; i < S; ++i) n_s4 += p[HEADER + i * BLOCK + KIND] == 0;
  Shared<T> own;  // alone, one set serves every block: no other thread reads it
  if (!shared) {
    shared = &own;
    own.y[0].resize(rows * H);
    own.wide[0].resize(rows * widest(p));
  }
  constexpr int64_t L = Vec<T>::lanes;
  const int64_t vectors = (H + L - 1) / L, b0 = team.first(vectors), b1 = team.end(vectors);
  const int64_t h0 = b0 * L, h1 = std::min(H, b1 * L);  // this thread's channels of the recurrence
  std::vector<T> z(rows * H), u(rows * H);
  std::vector<T*> row_states(rows);
  if (p[EMB] >= 0) {
    if (team.id == 0)
      for (int64_t r = 0; r < rows; ++r)
        std::copy_n(w + p[EMB] + tokens[r0 + r] * H, H, x + (r0 + r) * H);  // mutate: skip EMB is 0 (packed first)
  } else {
    linear(w + p[DOWN_W], w + p[DOWN_B], source + r0 * p[DOWN_IN], x + r0 * H, rows, p[DOWN_IN], H, team);
  }
  team.sync();
  for (int64_t i = 0; i < rows * H; ++i) z[i] = x[r0 * H + i] + (pending ? pending[r0 * H + i] : T(0));
  std::vector<T> h_(z);  // the running residual stream
  T* hs = h_.data();
  int64_t s4_index = 0;
  for (int64_t i = 0; i < S; ++i) {
    const int64_t* f = &p[HEADER + i * BLOCK];
    const int64_t set = team.size > 1 ? i % 2 : 0;
    T *y = shared->y[set].data(), *wide = shared->wide[set].data();
    norm(w, int(f[NORM]), f[NORM_1], f[NORM_2], eps[f[NORM_EPS]], hs, u.data(), rows, H);
    if (f[KIND] == 0) {
      const int64_t n_out = f[P0 + 13];
      for (int64_t r = 0; r < rows; ++r) row_states[r] = states + ((r0 + r) * n_s4 + s4_index) * vectors * N2 * 2 * L;
      recurrence(w, f + P0, u.data(), row_states.data(), y, rows, H, N2, b0, b1);
      const T* D = w + f[P0 + 10];
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t h = h0; h < h1; ++h) y[r * H + h] += D[h] * u[r * H + h];
        gelu(y + r * H + h0, h1 - h0);  // an empty part (h1 <= h0) writes nothing
      }
      team.sync();
      linear(w + f[P0 + 11], w + f[P0 + 12], y, wide, rows, H, n_out, team);
      const bool glu = f[P0 + 14];
      if (glu) owned<T>(team, rows, n_out, H, 2 * H, [&](int64_t at, int64_t n) { sigmoid(wide + at, n); });
      team.sync();
      for (int64_t r = 0; r < rows; ++r) {
        const T* v = wide + r * n_out;
        for (int64_t h = 0; h < H; ++h) hs[r * H + h] += glu ? v[h] * v[H + h] : v[h];
      }
      ++s4_index;
    } else {
      const int64_t hidden = f[P0 + 4];
      linear(w + f[P0], w + f[P0 + 1], u.data(), wide, rows, H, hidden, team);
      owned<T>(team, rows, hidden, 0, hidden, [&](int64_t at, int64_t n) { gelu(wide + at, n); });
      team.sync();
      linear(w + f[P0 + 2], w + f[P0 + 3], wide, y, rows, hidden, H, team);
      team.sync();
      for (int64_t i = 0; i < rows * H; ++i) hs[i] += y[i];
    }
  }
  for (int64_t i = 0; i < rows * H; ++i) hs[i] += z[i];  // the stage's skip around its blocks
  if (p[DEC_W] >= 0) {  // mutate: skip > 0: the decoder is never at offset 0 (the embedding is)
    const T* src = hs;
    if (p[FNORM] != NORM_NONE) {
      norm(w, int(p[FNORM]), p[FNORM_1], p[FNORM_2], eps[p[FNORM_EPS]], hs, u.data(), rows, H);
      src = u.data();
    }
    linear(w + p[DEC_W], w + p[DEC_B], src, out + r0 * p[N_CLASSES], rows, H, p[N_CLASSES], team);
  } else {
    linear(w + p[UP_W], w + p[UP_B], hs, out + r0 * p[UP_OUT], rows, H, p[UP_OUT], team);
  }
}

// One draw from a row of logits as sashimi/sampling/sample.py draws it (its oracle: that loop,
// tests/sampling/test_native_draw.py): z = the logits in float over the temperature, as the loop's
// `logits.float() / temperature`; with top_p < 1 the classes wholly beyond the nucleus removed (in
// order of z, those whose preceding probability reaches top_p: `top_p_filter`); log-probabilities
// over what is kept; the token the first class whose cumulative probability exceeds u times the
// total (`draw`, the inverse CDF); picked its log-probability. In double from the float z: a token
// differs from the loop's float32 draw only where u falls within float rounding of a boundary.
struct DrawScratch {
  std::vector<double> z, e;
  std::vector<int64_t> order;
};

template <typename T>
void draw(const T* logits, int64_t C, double temperature, double top_p, float u, DrawScratch& d, int64_t* token,
          float* picked) {
  d.z.resize(C);
  d.e.resize(C);
  double top = -INFINITY;
  for (int64_t c = 0; c < C; ++c) {
    float zc = float(logits[c]);
    if (temperature != 1.0) zc /= float(temperature);
    d.z[c] = zc;
    top = std::max(top, d.z[c]);
  }
  int64_t c = 0;
  for (; c + 4 <= C; c += 4)  // mutate: skip one early: the tail's std::exp takes the rest, within 1 ulp
    store(&d.e[c], exp_draw(load(&d.z[c]) - top));
  for (; c < C; ++c) d.e[c] = std::exp(d.z[c] - top);
  double total = 0;
  for (c = 0; c < C; ++c) total += d.e[c];  // in class order, as `running` below sums
  if (top_p < 1.0) {  // mutate: skip <=: at top_p 1 the filter keeps every class
    d.order.resize(C);
    std::iota(d.order.begin(), d.order.end(), int64_t(0));
    std::stable_sort(d.order.begin(), d.order.end(), [&](int64_t a, int64_t b) {
      return d.z[a] > d.z[b];  // mutate: skip >=: differs on ties of z only
    });
    double before = 0;
    for (const int64_t c : d.order) {
      const double pc = d.e[c] / total;
      if (before >= top_p) d.e[c] = 0;  // mutate: skip >: equal only on a set of measure zero
      before += pc;
    }
    total = std::accumulate(d.e.begin(), d.e.end(), 0.0);  // in class order, as `running` below sums
  }
  const double target = double(u) * total;
  double running = 0;
  int64_t k = C - 1;  // mutate: skip unreached for u < 1: the last running sum is the total
  for (int64_t c = 0; c < C; ++c) {  // mutate: skip C - 1: the last class is k's default
    running += d.e[c];
    if (running > target) {
      k = c;
      break;
    }
  }
  *token = k;
  *picked = float(d.z[k] - top - std::log(total));
}

// The generation state of `FusedStep` (its packed weights, states, DownPool buffers and pending
// UpPool outputs, held by the Python object that owns this one) and its step.
template <typename T>
class Stepper {
 public:
  Stepper(std::vector<std::vector<int64_t>> programs, std::vector<std::vector<double>> eps,
          std::vector<T*> weights, std::vector<T*> states, std::vector<T*> buffers, std::vector<T*> pending,
          std::vector<int64_t> pool, int64_t n_state, int64_t batch, int64_t team_width)
      : programs_(std::move(programs)), eps_(std::move(eps)), weights_(std::move(weights)),
        states_(std::move(states)), buffers_(std::move(buffers)), pending_(std::move(pending)),
        pool_(std::move(pool)), N2_(n_state / 2), batch_(batch), team_width_(team_width) {}

  // `FusedStep.step`: depth 0 every sample; depth d once its DownPool buffer holds pool[d-1]
  // new inputs, refilling depth d-1's pending UpPool outputs. With a team (`shares`), depth by
  // depth; else each thread takes its rows through every depth, with no barrier between.
  void step(const int64_t* tokens, T* logits, int threads) {
    const int64_t t = t_++;
    if (shares(threads)) {
      advance(t, tokens, logits, 0, batch_, [&](int64_t d, const int64_t* tk, const T* source, const T* pending,
                                                T* x, T* out) { call(d, tk, source, pending, x, out, threads); });
      return;
    }
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, batch_));  // mutate: skip 2: same rows
#pragma omp parallel for num_threads(chunks) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t r0 = batch_ * c / chunks, r1 = batch_ * (c + 1) / chunks;
      advance(t, tokens, logits, r0, r1, alone(r0, r1));
    }
  }

  // `steps` samples drawn as sashimi/sampling/sample.py's loop draws them, each fed back as the next
  // input: tokens (steps + 1, B), row 0 the first input; uniforms and picked (steps, B). Without a
  // team, each thread steps and draws its rows through all the steps (one parallel region).
  void sample(int64_t steps, int64_t* tokens, const float* uniforms, float* picked, double temperature,
              double top_p, int threads) {
    const int64_t C = programs_[0][N_CLASSES];
    std::vector<T> logits(batch_ * C);
    const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(threads, batch_));  // mutate: skip 2: same rows
    if (shares(threads)) {
      DrawScratch scratch;  // a team only where rows < threads: the rows' draws are a few microseconds
      for (int64_t s = 0; s < steps; ++s) {
        step(tokens + s * batch_, logits.data(), threads);
        for (int64_t r = 0; r < batch_; ++r)
          draw(logits.data() + r * C, C, temperature, top_p, uniforms[s * batch_ + r], scratch,
               tokens + (s + 1) * batch_ + r, picked + s * batch_ + r);
      }
      return;
    }
#pragma omp parallel for num_threads(chunks) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t r0 = batch_ * c / chunks, r1 = batch_ * (c + 1) / chunks;
      DrawScratch scratch;
      for (int64_t s = 0; s < steps; ++s) {
        advance(t_ + s, tokens + s * batch_, logits.data(), r0, r1, alone(r0, r1));
        for (int64_t r = r0; r < r1; ++r)
          draw(logits.data() + r * C, C, temperature, top_p, uniforms[s * batch_ + r], scratch,
               tokens + (s + 1) * batch_ + r, picked + s * batch_ + r);
      }
    }
    t_ += steps;
  }

 private:
  // Whether some depth runs as a team: fewer rows than threads and a depth at least team_width
  // wide (below that width a team's barriers cost more than its shared work saves: native.py,
  // TEAM_WIDTH).
  bool shares(int threads) const {
    int64_t widest = 0;  // mutate: skip a speed rule: a team computes what one thread does
    for (const auto& p : programs_) widest = std::max(widest, p[H_]);  // mutate: skip as above
    return threads > batch_ && widest >= team_width_;  // mutate: skip a speed rule: a team computes what one thread does
  }

  // Sample t for rows [r0, r1): each depth d run by run(d, tokens, source, pending, x, out) over
  // those rows, and only their parts of the DownPool buffers and pending UpPool outputs touched.
  template <typename Run>
  void advance(int64_t t, const int64_t* tokens, T* logits, int64_t r0, int64_t r1, Run run) {
    const int64_t K = pool_.size();
    std::vector<T> x(batch_ * programs_[0][H_]), slice;
    if (K) slice = column(0, t % pool_[0], r0, r1);
    run(0, tokens, nullptr, K ? slice.data() : nullptr, x.data(), logits);
    int64_t period = 1;
    for (int64_t d = 1; d <= K; ++d) {
      const int64_t n = (t + 1) / period - 1;
      set_column(d - 1, n % pool_[d - 1], x.data(), r0, r1);
      period *= pool_[d - 1];
      if ((t + 1) % period) break;
      std::vector<T> next_x(batch_ * programs_[d][H_]);
      if (d < K) slice = column(d, ((t + 1) / period - 1) % pool_[d], r0, r1);
      run(d, nullptr, buffers_[d - 1], d < K ? slice.data() : nullptr, next_x.data(), pending_[d - 1]);
      x = std::move(next_x);
    }
  }

  // Every depth of rows [r0, r1) on this thread alone.
  auto alone(int64_t r0, int64_t r1) {
    return [this, r0, r1](int64_t d, const int64_t* tokens, const T* source, const T* pending, T* x, T* out) {
      depth<T>(programs_[d], eps_[d], weights_[d], tokens, source, pending, states_[d], x, out, r0, r1, N2_, Team{},
               nullptr);
    };
  }

  // One depth over every row: all of them run by the threads as one team (`Team`) where the depth
  // is at least team_width wide, else the rows split over the threads.
  void call(int64_t d, const int64_t* tokens, const T* source, const T* pending, T* x, T* out, int threads) {
    const auto& p = programs_[d];
    const int64_t H = p[H_];
    if (H >= team_width_) {  // mutate: skip a speed rule: a team computes what one thread does
      Shared<T> shared;
      for (int k = 0; k < 2; ++k) {
        shared.y[k].resize(batch_ * H);
        shared.wide[k].resize(batch_ * widest(p));
      }
      Barrier barrier;
#pragma omp parallel num_threads(threads)
      depth<T>(p, eps_[d], weights_[d], tokens, source, pending, states_[d], x, out, 0, batch_, N2_,
               Team{omp_get_thread_num(), omp_get_num_threads(), &barrier}, &shared);
      return;
    }
    const int64_t chunks = std::min<int64_t>(threads, batch_);
#pragma omp parallel for num_threads(chunks) if (chunks > 1)
    for (int64_t c = 0; c < chunks; ++c)
      depth<T>(p, eps_[d], weights_[d], tokens, source, pending, states_[d], x, out, batch_ * c / chunks,
               batch_ * (c + 1) / chunks, N2_, Team{}, nullptr);
  }

  // pending[d] (B, H, P)[r0:r1, :, j] into a (B, H) vector's rows r0:r1; buffers[d][r0:r1, :, j] = values'
  std::vector<T> column(int64_t d, int64_t j, int64_t r0, int64_t r1) {
    const int64_t H = programs_[d][H_], P = pool_[d];
    std::vector<T> out(batch_ * H);
    for (int64_t i = r0 * H; i < r1 * H; ++i) out[i] = pending_[d][i * P + j];
    return out;
  }
  void set_column(int64_t d, int64_t j, const T* values, int64_t r0, int64_t r1) {
    const int64_t H = programs_[d][H_], P = pool_[d];
    for (int64_t i = r0 * H; i < r1 * H; ++i) buffers_[d][i * P + j] = values[i];
  }

  std::vector<std::vector<int64_t>> programs_;
  std::vector<std::vector<double>> eps_;
  std::vector<T*> weights_, states_, buffers_, pending_;
  std::vector<int64_t> pool_;
  int64_t N2_, batch_, team_width_, t_ = 0;
};

template <typename T>
void* make(int64_t depths, const int64_t* const* programs, const int64_t* program_sizes, const double* const* eps,
           const int64_t* eps_sizes, void* const* weights, void* const* states, void* const* buffers,
           void* const* pending, const int64_t* pool, int64_t n_state, int64_t batch, int64_t team_width) {
  std::vector<std::vector<int64_t>> p;
  std::vector<std::vector<double>> e;
  std::vector<T*> w, s, b, q;
  for (int64_t d = 0; d < depths; ++d) {
    p.emplace_back(programs[d], programs[d] + program_sizes[d]);
    e.emplace_back(eps[d], eps[d] + eps_sizes[d]);
    w.push_back(static_cast<T*>(weights[d]));
    s.push_back(static_cast<T*>(states[d]));
    if (d + 1 < depths) {  // mutate: skip <=: one more pointer read, never used
      b.push_back(static_cast<T*>(buffers[d]));
      q.push_back(static_cast<T*>(pending[d]));
    }
  }
  return new Stepper<T>(p, e, w, s, b, q, std::vector<int64_t>(pool, pool + depths - 1), n_state, batch,
                        team_width);
}

}  // namespace

// The C interface native.py calls through ctypes. double_precision: 0 float32, 1 float64. The
// pointers are the Python object's contiguous CPU tensors, which it keeps alive.
extern "C" {
void* sashimi_stepper_new(int double_precision, int64_t depths, const int64_t* const* programs,
                          const int64_t* program_sizes, const double* const* eps, const int64_t* eps_sizes,
                          void* const* weights, void* const* states, void* const* buffers, void* const* pending,
                          const int64_t* pool, int64_t n_state, int64_t batch, int64_t team_width) {
  auto build = double_precision ? make<double> : make<float>;
  return build(depths, programs, program_sizes, eps, eps_sizes, weights, states, buffers, pending, pool, n_state,
               batch, team_width);
}

void sashimi_stepper_step(void* stepper, int double_precision, const int64_t* tokens, void* logits, int threads) {
  if (double_precision)
    static_cast<Stepper<double>*>(stepper)->step(tokens, static_cast<double*>(logits), threads);
  else
    static_cast<Stepper<float>*>(stepper)->step(tokens, static_cast<float*>(logits), threads);
}

void sashimi_stepper_sample(void* stepper, int double_precision, int64_t steps, int64_t* tokens,
                            const float* uniforms, float* picked, double temperature, double top_p, int threads) {
  if (double_precision)
    static_cast<Stepper<double>*>(stepper)->sample(steps, tokens, uniforms, picked, temperature, top_p, threads);
  else
    static_cast<Stepper<float>*>(stepper)->sample(steps, tokens, uniforms, picked, temperature, top_p, threads);
}

// `draw` over `rows` rows of C logits (for its tests: the loop in sample.py is its oracle).
void sashimi_draw(int double_precision, const void* logits, int64_t rows, int64_t C, double temperature,
                  double top_p, const float* uniforms, int64_t* tokens, float* picked) {
  DrawScratch scratch;
  for (int64_t r = 0; r < rows; ++r) {
    if (double_precision)
      draw(static_cast<const double*>(logits) + r * C, C, temperature, top_p, uniforms[r], scratch, tokens + r,
           picked + r);
    else
      draw(static_cast<const float*>(logits) + r * C, C, temperature, top_p, uniforms[r], scratch, tokens + r,
           picked + r);
  }
}

void sashimi_stepper_free(void* stepper, int double_precision) {
  if (double_precision)
    delete static_cast<Stepper<double>*>(stepper);  // mutate: skip a leak: outputs cannot show it
  else
    delete static_cast<Stepper<float>*>(stepper);  // mutate: skip a leak: outputs cannot show it
}

// The step's activations alone, in place over n values (gate 0: GELU, 1: GLU's sigmoid), so that
// the vector math (its constants, its tail past the last full vector) meets float64 directly.
// The draw's exp of each of n doubles (`exp_draw`, four at a time), for its test against std::exp.
void sashimi_exp_draw(const double* x, double* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 4) {
    double lanes[4] = {};  // mutate: skip a larger array: the vector reads its first 4
    std::copy_n(x + i, std::min<int64_t>(4, n - i), lanes);
    store(lanes, exp_draw(load(lanes)));
    std::copy_n(lanes, std::min<int64_t>(4, n - i), out + i);
  }
}

void sashimi_activation(int double_precision, int gate, void* values, int64_t n) {
  if (double_precision)
    gate ? sigmoid(static_cast<double*>(values), n) : gelu(static_cast<double*>(values), n);
  else
    gate ? sigmoid(static_cast<float*>(values), n) : gelu(static_cast<float*>(values), n);
}
}
