"""Shared test configuration.

* A bounded, derandomized hypothesis profile for CI (2 cores): jit compiles make the
  first examples slow, so there is no deadline.
* ``x64``: a fixture that enables float64 for one test and restores the previous
  setting afterwards, so the flag never leaks into tests that did not ask for it.
* Compilation, not execution, is most of the suite's time (with every program already
  compiled, test_ops + test_attention run 3.3x faster).  So the tests (and the subprocesses
  they start) compile with XLA flags that trade a little run time of our small programs for
  compile time, each used only where this jaxlib accepts it (:data:`_FAST_COMPILE_FLAGS`),
  and share one persistent compilation cache per run between the xdist workers and
  subprocesses: a program that several tests build from fresh closures compiles once.
  The cache is removed when the run ends; nothing outside the run reads it.
"""

import os
import shutil
import subprocess
import sys
import tempfile

import jax
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=int(os.environ.get("JAXBP_HYPOTHESIS_EXAMPLES", "6")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: Measured on the suite (2 cores, 2 xdist workers): XLA:CPU's older loop emitters compile our
#: small programs about a fifth faster; LLVM at -O1 instead of -O2 a further quarter (the whole
#: suite 432 s -> 325 s together with NumPy test data, no test slower by over 3 s).  -O0 was
#: tried and dropped: it made one transposed-convolution check run 136 s.
_FAST_COMPILE_FLAGS = ("--xla_cpu_use_fusion_emitters=false", "--xla_backend_optimization_level=1")


def _accepted(flags: list[str]) -> list[str]:
    """The flags this jaxlib's XLA accepts (it aborts on unknown ones, and a later release may
    drop one): each tried at once in its own subprocess."""
    probe = [sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"]
    inherited = os.environ.get("XLA_FLAGS", "")
    runs = {
        flag: subprocess.Popen(probe, env={**os.environ, "XLA_FLAGS": f"{inherited} {flag}"}, stderr=subprocess.DEVNULL)
        for flag in flags
    }
    return [flag for flag, run in runs.items() if run.wait(timeout=120) == 0]


_OWNED_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    """The controller makes the run's cache directory and sets it (with the XLA flags) in the
    environment, which xdist workers and the subprocesses tests start inherit."""
    if hasattr(config, "workerinput"):
        directory = os.environ["JAX_COMPILATION_CACHE_DIR"]
    else:
        directory = tempfile.mkdtemp(prefix="jaxbp-tests-compilation-cache-")
        config.stash[_OWNED_CACHE] = directory
        os.environ.update({
            "JAX_COMPILATION_CACHE_DIR": directory,
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        })  # fmt: skip
        inherited = os.environ.get("XLA_FLAGS", "")
        missing = [flag for flag in _FAST_COMPILE_FLAGS if flag.split("=")[0] not in inherited]
        if missing and (accepted := _accepted(missing)):
            os.environ["XLA_FLAGS"] = " ".join([inherited, *accepted]).strip()  # before JAX's backend starts
    # this process imported jax before the variables were set, so it is told directly
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
    directory = config.stash.get(_OWNED_CACHE, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def x64():
    """Run the test with float64 enabled; restore the flag afterwards."""
    with jax.enable_x64(True):
        yield
