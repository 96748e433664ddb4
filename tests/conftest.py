"""Shared test configuration.

* A bounded, derandomized hypothesis profile for CI (2 cores): jit compiles make the
  first examples slow, so there is no deadline.
* ``x64``: a fixture that enables float64 for one test and restores the previous
  setting afterwards, so the flag never leaks into tests that did not ask for it.
"""

import os

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


@pytest.fixture
def x64():
    """Run the test with float64 enabled; restore the flag afterwards."""
    with jax.enable_x64(True):
        yield
