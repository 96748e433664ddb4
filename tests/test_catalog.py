"""The op catalog: complete by construction, every primal its reference twin, and every case
through the same sweep users run on their own ops (jaxbp.gradcheck.sweep_op)."""

from __future__ import annotations

import inspect
import zlib

import jax
import numpy as np
import pytest

from jaxbp import ops
from jaxbp.gradcheck import strip_custom_rules
from jaxbp.gradcheck.catalog import CASES

#: Failures of today's ops that belong to their owners, one (case, check) each with what fails.
#: A listed check that passes fails the test, so a fix removes its line.
KNOWN_FINDINGS = {
    # Both are where autodiff of the full-matrix reference multiplies a masked entry's 0 by a NaN or
    # inf (ops.attention's docstring names them): a NaN query's dk at keys it cannot see (the tiled
    # rule never visits those tiles), and an inf in a masked key's v, whose output row is NaN in both.
    ("attention_masked", "non-finite"): "inf in a masked key's v: NaN dk where autodiff has 0 (output NaN in both)",
    ("attention_causal_grouped", "non-finite"): "NaN in a query: autodiff's dk of keys it cannot see is NaN (0 * NaN)",
}

#: Finite differences of the gradient cost one more compilation per op: a representative set
#: (smooth, saturating, normalizing, fused-loss and linear ops) keeps the file inside the CI budget.
SECOND_ORDER_FINITE_DIFFERENCES = {
    "tanh", "gelu_tanh", "softmax", "softmax_cross_entropy_int", "layer_norm", "dense", "batch_norm",
}  # fmt: skip


def test_every_public_op_has_a_case():
    public = {name for name in ops.__all__ if inspect.isfunction(getattr(ops, name))}
    covered = {case.of for case in CASES.values()}
    assert public - covered == set(), f"public ops without a case in jaxbp/gradcheck/catalog.py: {public - covered}"
    assert covered <= public


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_primal_is_the_reference_twin(x64, name):
    """Stripping the op's rule gives exactly (bit for bit) its reference function."""
    case = CASES[name]
    args = case.draw(5)
    stripped, twin = jax.jit(strip_custom_rules(case.op))(*args), jax.jit(case.reference)(*args)
    assert jax.tree_util.tree_structure(stripped) == jax.tree_util.tree_structure(twin)
    for got, want in zip(jax.tree_util.tree_leaves(stripped), jax.tree_util.tree_leaves(twin)):
        np.testing.assert_array_equal(got, want, err_msg=f"{name}: the op's primal is not its reference twin")


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_case_passes_the_sweep(x64, name):
    """One draw per op (a sweep compiles about ten programs), its shape drawn from a seed of the
    op's name; ``jaxbp gradcheck-ops --shapes N`` runs N draws."""
    seed = zlib.crc32(name.encode()) % 2**16
    report = CASES[name].sweep(name, seed=seed, second_order_numerical=name in SECOND_ORDER_FINITE_DIFFERENCES)
    known = {check for (case, check) in KNOWN_FINDINGS if case == name}
    unexpected = [f"{r.check}: {p}" for r in report.results if r.check not in known for p in r.problems]
    assert not unexpected, "\n".join(unexpected)
    for check in known:
        assert any(r.check == check and not r.passed for r in report.results), (
            f"{name}: {check} passes now; remove it from KNOWN_FINDINGS"
        )
