"""The skewed fit's cold starts in a pool of processes give the very numbers of one process.

A frame's fits warm-start from the previous frame's, so a replay goes frame by frame; the
two cold starts of a skewed fit are independent and run at once in a pool
(:mod:`ncsynth.analysis.pool`). Nothing may change a digit: live and replay are compared
with ==.
"""

import math

import numpy as np
import pytest

from ncsynth.analysis.pool import search_pool
from ncsynth.analysis.saxs import fit_pattern
from ncsynth.analysis.scattering import sphere_intensity
from ncsynth.analysis.skewed import fit_skewed

Q_NM = np.linspace(0.1, 5.0, 300)


def skewed_pattern(seed: int):
    """Two Gaussian sets summed (a skewed size distribution), Poisson noise."""
    rng = np.random.default_rng(seed)
    intensity = sphere_intensity(Q_NM, 2.0, 0.12, 1e-5) + sphere_intensity(Q_NM, 1.6, 0.2, 4e-6) \
        + 0.01
    scale = 1e5 / intensity.max()
    return rng.poisson(intensity * scale) / scale, np.sqrt(intensity * scale) / scale


@pytest.fixture(scope="module")
def pool_map():
    with search_pool(2) as mapper:
        yield mapper


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cold_starts_in_a_pool_give_the_same_fit_to_the_last_digit(pool_map, seed):
    y, s = skewed_pattern(seed)
    gaussian = fit_pattern(Q_NM, y, s)
    assert gaussian.success
    alone = fit_skewed(Q_NM, y, s, gaussian)  # no guess: both cold starts
    pooled = fit_skewed(Q_NM, y, s, gaussian, mapper=pool_map)
    assert alone.success and math.isfinite(alone.skewness)
    assert pooled == alone


def test_one_process_is_the_builtin_map_and_a_bad_count_is_refused():
    with search_pool(1) as mapper:
        assert mapper is map
    with pytest.raises(ValueError, match="processes must be an integer >= 1"):
        with search_pool(0):
            pass


_CTRL_C_WHILE_WORKERS_START = """
import os, signal, time
received = []
signal.signal(signal.SIGINT, lambda *_: received.append(1))  # this process goes on
from ncsynth.analysis.pool import search_pool
os.environ["NCSYNTH_TEST_SLOW_START"] = "1"  # each worker's interpreter takes 2 s to start
with search_pool(2, code="ncsynth.analysis.mcsas_noise") as mapper:
    time.sleep(0.5)
    os.killpg(0, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
    print(list(mapper(abs, [-1, -2, -3])), len(received), flush=True)
"""


def test_a_ctrl_c_while_the_workers_start_does_not_break_the_pool(tmp_path):
    """A terminal's Ctrl-C reaches a pool's workers too; one that came while a worker's
    interpreter was still starting killed it (the pool's initializer had not run yet), broke
    the pool (BrokenProcessPool) and printed the executor's thread's traceback. The workers now
    start with SIGINT blocked and ignore it from their initializer on; the pool's owner gets
    it."""
    import os
    import subprocess
    import sys

    (tmp_path / "sitecustomize.py").write_text(
        "import os, time\nif os.environ.get('NCSYNTH_TEST_SLOW_START'):\n    time.sleep(2.0)\n")
    done = subprocess.run([sys.executable, "-c", _CTRL_C_WHILE_WORKERS_START], capture_output=True,
                          text=True, timeout=120, start_new_session=True,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1",
                               "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split("\n")[0] == "[1, 2, 3] 1"
    assert "Traceback" not in done.stderr
