"""The mutation catalogue, continued: the native step's C++ (sashimi/model/native_step.cpp),
anchored by exact text (`sashimi.harness.plan.text_job`); a mutated source builds into the
mutant's own copy."""

from sashimi.harness.catalogue_types import Mutant

CPP = 'sashimi/model/native_step.cpp'
KILLS = 'tests/model/test_native.py'

NATIVE = [
    Mutant('native-recurrence-conj', CPP, 'recurrence',
           'const V xr = ar * re - ai * im',
           'const V xr = ar * re + ai * im',
           'native recurrence multiplies by conj(a) in the real part', kills=KILLS),
    Mutant('native-mu-real-only', CPP, 'recurrence',
           'm += load(sn) * load(cn + MR * L) + load(sn + L) * load(cn + MI * L);',
           'm += load(sn) * load(cn + MR * L);',
           "native recurrence drops the imaginary half of m . x (the rank-one correction)", kills=KILLS),
    Mutant('native-glu-gates-the-wrong-half', CPP, 'depth',
           'owned<T>(team, rows, n_out, H, 2 * H,',
           'owned<T>(team, rows, n_out, 0, H,',
           "native GLU gates the second half by the first (F.glu gates the first by the second)", kills=KILLS),
    Mutant('native-stage-skip-dropped', CPP, 'depth',
           'hs[i] += z[i];',
           'hs[i] += 0;',
           "native step drops the skip around a stage's blocks", kills=KILLS),
    Mutant('native-pending-phase', CPP, 'step',
           'slice = column(0, t % pool_[0]);',
           'slice = column(0, (t + 1) % pool_[0]);',
           "native step reads the UpPool's pending outputs one phase late", kills=KILLS),
    Mutant('native-rows-lost-between-threads', CPP, 'call',
           'batch_ * (c + 1) / chunks',
           'batch_ * c / chunks + batch_ / chunks',
           'threads split the rows by truncated division: a row of an odd batch is never computed', kills=KILLS),
    Mutant('native-row-tile-off-by-one', CPP, 'linear',
           'r + 2 <= rows',
           'r + 2 < rows',
           'the two-row tile loop stops one pair early: the last row pair runs as one row', kills=KILLS),
    Mutant('native-layer-norm-without-eps', CPP, 'norm',
           'std::sqrt(var + T(eps))',
           'std::sqrt(var)',
           "native LayerNorm drops its eps (a 1e-5 relative error)", kills=KILLS),
    Mutant('native-erf-coefficient', CPP, 'gelu_vec',
           '0.3275911f',
           '0.3275f',
           "the float erf approximation's p rounded to four digits (errors near 1e-4 in GELU)", kills=KILLS),
]
