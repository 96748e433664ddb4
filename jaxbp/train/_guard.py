"""The non-finite guard: which step, tap or gradient first became NaN/Inf, said in one message."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxbp.train._step import StepMetrics


class NonFiniteError(FloatingPointError):
    """Training produced NaN/Inf; ``step`` is the step, ``layer`` where it first appeared."""

    def __init__(self, message: str, *, step: int, layer: str | None) -> None:
        super().__init__(message)
        self.step = step
        self.layer = layer


def non_finite_error(
    step: int,
    metrics: StepMetrics,
    *,
    epoch: int,
    tap_names: tuple[str, ...],
    leaf_paths: list[str],
    last_checkpoint: Path | None,
) -> NonFiniteError:
    """The error for a step whose ``metrics.ok`` is False: step, first bad tap or gradient leaf."""
    bad_taps = [name for name, ok in zip(tap_names, np.asarray(metrics.activations_finite)) if not ok]
    bad_leaves = [path for path, ok in zip(leaf_paths, np.asarray(metrics.gradients_finite)) if not ok]
    parts = []
    if bad_taps:
        parts.append(
            f"first non-finite activation at tap {bad_taps[0]!r}"
            + (
                f" (then {', '.join(map(repr, bad_taps[1:4]))}{', ...' if len(bad_taps) > 4 else ''})"
                if len(bad_taps) > 1
                else ""
            )
        )
    if bad_leaves:
        parts.append(
            f"non-finite gradient first in params{bad_leaves[0]} ({len(bad_leaves)} of {len(leaf_paths)} leaves)"
        )
    if not bool(metrics.params_finite):
        parts.append("the updated parameters are not finite")
    parts.append(f"loss {float(metrics.loss)}")
    layer = bad_taps[0] if bad_taps else (f"params{bad_leaves[0]}" if bad_leaves else None)
    saved = (
        f"last good checkpoint: {last_checkpoint}" if last_checkpoint is not None else "there is no earlier checkpoint"
    )
    message = (
        f"training stopped: non-finite values at step {step} (epoch {epoch + 1}): " + "; ".join(parts)
        + f". The state of this step was discarded, no checkpoint was written from it ({saved}). "
        "Try a lower learning rate (--lr), gradient clipping (clip_norm, --clip) or another initialisation."
    )  # fmt: skip
    return NonFiniteError(message, step=step, layer=layer)
