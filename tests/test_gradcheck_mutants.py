"""The mutation benchmark (benchmarks/gradcheck_mutants.py) on a tiny run: two mutants of tanh's rule."""

from __future__ import annotations

import importlib.util
import json
import pathlib

import jax
import jax.numpy as jnp
import pytest

from jaxbp import ops

SCRIPT = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "gradcheck_mutants.py"


@pytest.fixture(scope="module")
def mutants():
    spec = importlib.util.spec_from_file_location("gradcheck_mutants", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_mutant_keeps_the_value_and_changes_only_the_rule(mutants, x64):
    x = jnp.array([0.5, -1.0, 2.0])
    scaled = mutants.mutant_of(ops.tanh, "scaled 1+1e-3")
    assert jnp.array_equal(scaled(x), ops.tanh(x))
    assert jnp.allclose(jax.grad(lambda x: scaled(x).sum())(x), 1.001 * jax.grad(lambda x: ops.tanh(x).sum())(x))


def test_tiny_run_writes_the_table_and_json(mutants, tmp_path, capsys):
    out = tmp_path / "mutants.json"
    argv = ["--ops", "tanh", "--draws", "1", "--mutants", "scaled 1+1e-3", "stop_gradient residual", "--json", str(out)]
    assert mutants.main(argv) == 0
    table = capsys.readouterr().out
    assert "| `tanh` | 2 | 2 | 1 | 1 |" in table  # the sweep's second order catches what first order cannot
    results = json.loads(out.read_text())
    assert results["mutants"]["tanh"]["stop_gradient residual"] == {
        "sweep": True, "check_gradients": False, "check_grads": False,
    }  # fmt: skip
    assert results["false_positives"]["tanh"]["sweep"] == 0 and results["false_positives"]["tanh"]["draws"] == 2
    assert mutants.main(argv) == 2  # an existing output is refused
