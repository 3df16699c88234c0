"""The mutation catalogue, continued: small errors (a draw a few percent off, pi to ten digits, a
count over padding) and silent gaps (missing fixtures excused, a width never checked)."""

from sashimi.harness.catalogue_types import Mutant

SMALL = [
    # --- sampling a few percent off while the reported log-likelihood stays right ---
    Mutant('draw-five-percent-cold', 'sashimi/sampling/sample.py', 'sampling_loop',
           'draw(logp, generator)',
           'draw(logp * 1.05, generator)',
           'the draw made at T / 1.05 (5% too cold); the reported log-likelihood unchanged', kills='tests/sampling/test_distribution.py'),
    Mutant('draw-five-percent-hot', 'sashimi/sampling/sample.py', 'sampling_loop',
           'draw(logp, generator)',
           'draw(logp / 1.05, generator)',
           'the draw made at T x 1.05 (5% too hot); the reported log-likelihood unchanged', kills='tests/sampling/test_distribution.py'),
    Mutant('top-p-two-points-low', 'sashimi/sampling/sample.py', 'sampling_loop',
           'top_p_filter(logits, top_p)',
           'top_p_filter(logits, top_p - 0.02)',
           'nucleus sampling keeps 0.02 less probability than --top-p', kills='tests/sampling/test_distribution.py'),
    Mutant('top-p-two-points-high', 'sashimi/sampling/sample.py', 'sampling_loop',
           'top_p_filter(logits, top_p)',
           'top_p_filter(logits, min(top_p + 0.02, 1.0))',
           'nucleus sampling keeps 0.02 more probability than --top-p', kills='tests/sampling/test_distribution.py'),
    # --- float64 arithmetic a little off ---
    Mutant('pi-to-ten-digits', 'sashimi/model/cauchy.py', 'half_angle_tables',
           'math.pi * k / L',
           '3.1415926536 * k / L',
           'the half-angle tables use pi to ten digits (a 1e-11 relative error in float64)', kills='tests/model/test_cauchy.py'),
    # --- silent gaps ---
    Mutant('missing-fixtures-skipped', 'sashimi/harness/gate.py', 'published_rows',
           'None if excused else False',
           'None',
           'a missing fixtures folder is a skip: the published rows vanish and check exits 0', kills='tests/harness/test_gate.py'),
    Mutant('missing-fixtures-excused-anywhere', 'sashimi/harness/gate.py', 'published_rows',
           "excused = allow_missing and source == 'the checkout'",
           'excused = allow_missing',
           '--allow-missing-fixtures also excuses a folder the user named', kills='tests/harness/test_gate.py'),
    Mutant('downpool-width-unchecked', 'sashimi/model/pool.py', 'DownPool.forward',
           "check_width(x, self.linear.in_features // self.pool, 'DownPool')",
           '',
           "DownPool fed the wrong width fails inside torch's matmul, not with a ShapeError naming H", kills='tests/test_typing.py'),
]
