"""Validation of the spatial arguments shared by convolution and pooling ops.

Stride, dilation and window sizes as one int or one per spatial axis; padding as "SAME",
"VALID", an int or (lo, hi) pairs; kernel and bias shapes against the input. Every error
names the op and the value at fault.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jaxbp.core import Array, as_float_array, require_rank
from jaxbp.reference.conv import Pairs, output_size, padding_pairs
from jaxbp.validation import integer_or_none, positive_int


def spatial_ints(op: str, name: str, value: Any, num_spatial: int, minimum: int = 1) -> tuple[int, ...]:
    """An int or one int per spatial axis, each >= ``minimum``, as a tuple (stride, dilation, window)."""
    single = integer_or_none(value)
    try:
        values = (single,) * num_spatial if single is not None else tuple(integer_or_none(v) for v in value)
    except TypeError:
        raise TypeError(f"{op}: {name} must be an int or {num_spatial} ints, got {value!r}") from None
    if len(values) != num_spatial or any(v is None for v in values):
        raise TypeError(f"{op}: {name} must be an int or {num_spatial} ints, got {value!r}")
    if any(v < minimum for v in values):  # type: ignore[operator]
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    return values  # type: ignore[return-value]


def check_padding(op: str, padding: Any, num_spatial: int) -> str | int | tuple[tuple[int, int], ...]:
    """``padding`` as "SAME"/"VALID" (any case), an int >= 0 or one (lo, hi) pair of ints >= 0 per
    axis, with NumPy integers turned into Python ints; anything else is refused naming ``op``."""
    if isinstance(padding, str):
        if padding.upper() not in ("SAME", "VALID"):
            raise ValueError(
                f'{op}: padding must be "SAME", "VALID", an int or {num_spatial} (lo, hi) pairs, got {padding!r}'
            )
        return padding
    single = integer_or_none(padding)
    if single is not None:
        if single < 0:
            raise ValueError(f"{op}: padding must be >= 0, got {single}")
        return single
    try:
        pairs = tuple(tuple(integer_or_none(v) for v in p) for p in padding)
    except TypeError:
        raise TypeError(
            f"{op}: padding must be a string, an int or {num_spatial} (lo, hi) pairs, got {padding!r}"
        ) from None
    if len(pairs) != num_spatial or not all(len(p) == 2 and all(v is not None and v >= 0 for v in p) for p in pairs):
        raise ValueError(f"{op}: padding must be {num_spatial} (lo, hi) pairs of ints >= 0, got {padding!r}")
    return pairs  # type: ignore[return-value]


def explicit_padding(
    op: str,
    padding: Any,
    in_spatial: Sequence[int],
    window: Sequence[int],
    stride,
    dilation,
) -> Pairs:
    """Check ``padding`` (see :func:`check_padding`) and return it as explicit (lo, hi) pairs."""
    return padding_pairs(check_padding(op, padding, len(in_spatial)), in_spatial, window, stride, dilation)


def require_windows_fit(
    op: str,
    x_shape: Sequence[int],
    window: Sequence[int],
    stride,
    dilation,
    padding: Pairs,
    what: str,
) -> None:
    """Raise unless every spatial axis gives at least one output.

    Plain jnp would return an empty output here; the ops refuse it instead, because a window
    larger than its (padded) input is a misconfigured layer whose empty result would only
    surface later, far from its cause."""
    for axis, (n, k, s, d, pad) in enumerate(zip(x_shape[1:-1], window, stride, dilation, padding)):
        if output_size(n, k, s, d, pad) < 1:
            raise ValueError(
                f"{op}: {what} {tuple(window)} (dilation {tuple(dilation)}) is larger than the padded input "
                f"along spatial axis {axis}: input shape {tuple(x_shape)}, padding {padding}"
            )


def checked_params(op: str, params: Any, x: Any, num_spatial: int) -> tuple[Array, Array, Array]:
    if not isinstance(params, dict) or set(params) != {"w", "b"}:
        found = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f'{op}: params must be a dict with keys "w" and "b", got {found}')
    w = as_float_array(op, 'params["w"]', params["w"])
    b = as_float_array(op, 'params["b"]', params["b"])
    x = as_float_array(op, "x", x)
    layout = {1: "(N, W, C)", 2: "(N, H, W, C)"}[num_spatial]
    if x.ndim != num_spatial + 2:
        raise ValueError(f"{op}: x must have rank {num_spatial + 2} {layout}, got shape {tuple(x.shape)}")
    require_rank(op, 'params["w"]', w, rank=num_spatial + 2)
    if 0 in w.shape[:num_spatial]:
        raise ValueError(
            f'{op}: params["w"] has a zero-size kernel (shape {tuple(w.shape)}); each window needs >= 1 tap'
        )
    return w, b, x


def check_groups(op: str, groups: Any, x: Array) -> int:
    groups = positive_int(op, "groups", groups)
    if x.shape[-1] % groups:
        raise ValueError(f"{op}: groups={groups} does not divide the {x.shape[-1]} channels of x {tuple(x.shape)}")
    return groups


def check_channels(op: str, x: Array, w: Array, per_group: int, groups: int) -> None:
    if per_group * groups != x.shape[-1]:
        raise ValueError(
            f"{op}: x has {x.shape[-1]} channels (shape {tuple(x.shape)}) but w {tuple(w.shape)} expects "
            f"{per_group * groups} ({per_group} per group x groups={groups})"
        )


def check_bias(op: str, b: Array, channels: int, w: Array) -> None:
    if tuple(b.shape) != (channels,):
        raise ValueError(f"{op}: b must have shape ({channels},) to match w {tuple(w.shape)}, got {tuple(b.shape)}")
