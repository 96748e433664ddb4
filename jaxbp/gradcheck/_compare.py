"""Element-wise comparison of two gradients and the report of a gradient check.

One element passes when ``|a - b| <= atol * scale + rtol * |b| (+ floor)`` -- torch.autograd.gradcheck's
form, with ``b`` the trusted value (the reference's gradient, or the finite differences) and
``scale = max(1, max |b| over the leaf)``: rounding is relative to the largest terms, so a
gradient holding 1e4 next to O(1) values (huge logits) rounds its small elements at 1e4 u.
Two NaNs in the same place, or two equal infinities, are equal; any other non-finite pair fails.
The *score* of an element is ``|a - b| / (atol + rtol |b| + floor)``: a leaf passes when its
worst score is at most 1, and the report names that worst element.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

UNIT_ROUNDOFF = float(np.finfo(np.float64).eps) / 2  # u = 2^-53


class Tolerance(NamedTuple):
    """Per element ``|a - b| <= atol + rtol * |b|``."""

    atol: float
    rtol: float


#: Manual rule vs ``jax.grad`` through the reference, both in float64: the two differ only by
#: rounding, a few u = 1.1e-16 times the magnitude of the summed terms (about 1e-14 for the
#: catalog's O(1) data). atol 1e-10 and rtol 1e-8 leave 10^4 of room for longer sums and
#: cancellation, and stay 10^5 below the smallest error a wrong rule makes in the mutation
#: benchmark (a rule scaled by 1 +- 1e-3).
REFERENCE_TOLERANCE = Tolerance(atol=1e-10, rtol=1e-8)

#: Manual rule vs central differences (step eps = 1e-6) in float64. The truncation error is
#: eps^2 |f'''| / 6 (about 2e-13 |f'''|); the rounding error of one difference is added as a
#: floor per check (:func:`finite_difference_floor`). What is left, atol 1e-8 and rtol 1e-6,
#: is what central differences of O(1) smooth functions reach with room to spare; it still
#: sees a 1e-3 relative error in any element larger than 1e-5.
NUMERICAL_TOLERANCE = Tolerance(atol=1e-8, rtol=1e-6)


def finite_difference_floor(magnitude: float, eps: float) -> float:
    """The rounding error of a central difference of the scalar ``<c, f(x)>``.

    Each evaluation of the scalar is off by up to ``n u sum_i |c_i f_i|`` (``magnitude``);
    dividing the difference of two by ``2 eps`` gives ``n u magnitude / eps``. ``n = 16``
    stands for the depth of the computation (the rounding a typical op accumulates).
    """
    return 16 * UNIT_ROUNDOFF * magnitude / eps


def as_tolerance(value: Tolerance | float | None, default: Tolerance) -> Tolerance:
    """A :class:`Tolerance`; a bare number replaces ``default``'s rtol (atol kept)."""
    if value is None:
        return default
    if isinstance(value, Tolerance):
        return value
    return Tolerance(default.atol, float(value))


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """The worst element of one comparison: where, both values, and by how much."""

    against: str  # "reference" or "finite differences"
    index: tuple[int, ...]
    got: float
    want: float
    allowed: float  # atol scale + rtol |want| + floor
    score: float  # |got - want| / allowed; > 1 fails

    def describe(self) -> str:
        where = f"[{', '.join(map(str, self.index))}]" if self.index else "(scalar)"
        return (
            f"vs {self.against} at {where}: manual {self.got:.9g}, {self.against} {self.want:.9g}, "
            f"|diff| {abs(self.got - self.want):.2e} > allowed {self.allowed:.2e}"
        )


def worst_element(got: np.ndarray, want: np.ndarray, tol: Tolerance, floor: float, against: str) -> Mismatch | None:
    """The element of ``got`` with the highest score against ``want``; ``None`` for empty arrays."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        raise ValueError(f"gradcheck: shapes differ, {got.shape} vs {want.shape}")
    if got.size == 0:
        return None
    magnitude = np.abs(np.nan_to_num(want, nan=0.0, posinf=0.0, neginf=0.0))
    allowed = tol.atol * max(1.0, float(magnitude.max())) + tol.rtol * magnitude + floor
    with np.errstate(invalid="ignore"):
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        difference = np.where(same, 0.0, np.abs(got - want))
    score = np.where(np.isfinite(difference), difference / allowed, np.inf)
    flat = int(np.argmax(score))
    index = tuple(int(i) for i in np.unravel_index(flat, got.shape))
    return Mismatch(against, index, float(got.flat[flat]), float(want.flat[flat]), float(allowed.flat[flat]),
                    float(score.flat[flat]))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class LeafComparison:
    """One row of a :class:`GradientReport`: one leaf of one differentiated argument, with
    the manual gradient and what it is compared with (``None`` where not computed)."""

    argument: int
    path: str
    manual: np.ndarray
    reference: np.ndarray | None
    numerical: np.ndarray | None
    numerical_floor: float = 0.0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.manual.shape)

    @property
    def manual_norm(self) -> float:
        return float(np.linalg.norm(self.manual.ravel()))

    def vs_reference(self, tol: Tolerance = REFERENCE_TOLERANCE) -> Mismatch | None:
        if self.reference is None:
            return None
        return worst_element(self.manual, self.reference, tol, 0.0, "reference")

    def vs_numerical(self, tol: Tolerance = NUMERICAL_TOLERANCE) -> Mismatch | None:
        if self.numerical is None:
            return None
        return worst_element(self.manual, self.numerical, tol, self.numerical_floor, "finite differences")


def _score(mismatch: Mismatch | None) -> str:
    return "-" if mismatch is None else f"{mismatch.score:.2g} at {list(mismatch.index)}"


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """The result of :func:`jaxbp.gradcheck.check_gradients`; ``print`` it for a table.

    ``no_reference`` says why there was no reference to compare with (``None`` when there was).
    """

    name: str
    order: int
    rows: tuple[LeafComparison, ...]
    output: np.ndarray | None  # f's output (flattened), or None without a reference
    reference_output: np.ndarray | None
    no_reference: str | None = None

    def _mismatches(self, reference_tol: Tolerance, numerical_tol: Tolerance) -> list[tuple[str, Mismatch]]:
        found = []
        if self.output is not None and self.reference_output is not None:
            forward = worst_element(self.output, self.reference_output, reference_tol, 0.0, "reference")
            found.append(("forward output", forward))
        for r in self.rows:
            label = f"argument {r.argument}{r.path} {r.shape}"
            found += [(label, r.vs_reference(reference_tol)), (label, r.vs_numerical(numerical_tol))]
        return [(label, m) for label, m in found if m is not None]

    def worst_score(self, against: str = "reference") -> float:
        """The highest element score of the gradient against ``"reference"`` or
        ``"finite differences"`` under the default tolerances (<= 1 passes)."""
        found = [r.vs_reference() if against == "reference" else r.vs_numerical() for r in self.rows]
        return max((m.score for m in found if m is not None), default=0.0)

    @property
    def worst_vs_reference(self) -> float:
        return self.worst_score("reference")

    @property
    def worst_vs_numerical(self) -> float:
        return self.worst_score("finite differences")

    def failures(
        self, reference_tol: Tolerance | float | None = None, numerical_tol: Tolerance | float | None = None
    ) -> list[str]:
        """One line per failed comparison (default tolerances: :data:`REFERENCE_TOLERANCE`,
        :data:`NUMERICAL_TOLERANCE`; a bare number sets that comparison's rtol)."""
        reference_tol = as_tolerance(reference_tol, REFERENCE_TOLERANCE)
        numerical_tol = as_tolerance(numerical_tol, NUMERICAL_TOLERANCE)
        problems = [
            f"{label}: {m.describe()}" for label, m in self._mismatches(reference_tol, numerical_tol) if m.score > 1
        ]
        compared = any(r.reference is not None or r.numerical is not None for r in self.rows)
        if not compared:
            problems.append(f"nothing was compared: {self.no_reference}, and finite differences were turned off")
        return problems

    def assert_ok(
        self, reference_tol: Tolerance | float | None = None, numerical_tol: Tolerance | float | None = None
    ) -> GradientReport:
        """Raise ``AssertionError`` naming every failed comparison; return self."""
        problems = self.failures(reference_tol, numerical_tol)
        if problems:
            raise AssertionError(f"gradient check of {self.name} failed:\n  " + "\n  ".join(problems) + f"\n{self}")
        return self

    def __str__(self) -> str:
        header = ("arg", "leaf", "shape", "|manual|", "vs reference (score at)", "vs finite diff (score at)")
        body = [
            (str(r.argument), r.path or "-", str(r.shape), f"{r.manual_norm:.3e}",
             _score(r.vs_reference()), _score(r.vs_numerical()))
            for r in self.rows
        ]  # fmt: skip
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
        order = "gradient" if self.order == 1 else "second derivative (gradient of a projected gradient)"
        lines = [
            f"gradient check: {self.name}, {order}, float64; score = |manual - b| / (atol scale + rtol |b|), <= 1 passes",
            f"  reference tolerance {REFERENCE_TOLERANCE}, finite differences {NUMERICAL_TOLERANCE} + rounding floor",
        ]
        if self.no_reference:
            lines.append(f"  no reference: {self.no_reference}")
        for row in [header, *body]:
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths)))
        return "\n".join(lines)
