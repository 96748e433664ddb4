"""Shared test configuration.

* A bounded, derandomized hypothesis profile for CI (2 cores): jit compiles make the
  first examples slow, so there is no deadline.
* ``x64``: a fixture that enables float64 for one test and restores the previous
  setting afterwards, so the flag never leaks into tests that did not ask for it.
* Compilation, not execution, is most of the suite's time (with every program already
  compiled, test_ops + test_attention run 3.3x faster).  So the tests (and the subprocesses
  they start) use XLA:CPU's older loop emitters where this jaxlib has the flag, which compile
  about a fifth faster on our small programs, and one persistent compilation cache per run, shared by the xdist workers
  and subprocesses: a program that several tests build from fresh closures compiles once.
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

_FAST_COMPILE_FLAG = "--xla_cpu_use_fusion_emitters=false"


def _with_fast_compile_flag() -> str | None:
    """``XLA_FLAGS`` plus the fast-compile flag, if this jaxlib's XLA knows the flag (XLA aborts
    on unknown flags, and a later release may drop this one): checked once, in a subprocess."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} {_FAST_COMPILE_FLAG}".strip()
    probe = [sys.executable, "-c", "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"]
    ok = subprocess.run(probe, env={**os.environ, "XLA_FLAGS": flags}, capture_output=True, timeout=120).returncode == 0
    return flags if ok else None


_OWNED_CACHE = pytest.StashKey[str]()


def pytest_configure(config):
    """The controller makes the run's cache directory and sets it (with the XLA flag) in the
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
        if _FAST_COMPILE_FLAG not in os.environ.get("XLA_FLAGS", "") and (flags := _with_fast_compile_flag()):
            os.environ["XLA_FLAGS"] = flags  # before any test starts JAX's backend
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
