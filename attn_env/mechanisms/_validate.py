"""Input checks shared by every mechanism: one place, one wording of each error.

Every check raises ``ValueError`` naming the bad value and what was expected.
Arrays always carry a leading batch axis; a single market is ``x[None]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = [
    "MAX_MAGNITUDE",
    "as_batch",
    "check_k",
    "check_nonneg",
    "check_positive",
    "check_reserve",
    "check_unknown",
    "check_weights",
]


#: largest magnitude accepted in any price or weight array: far enough below
#: float64's 1.8e308 that sums and products of prices (payments, welfare,
#: Clarke differences) cannot overflow to inf or NaN.
MAX_MAGNITUDE = 1e150


def as_batch(x: ArrayLike, name: str, dims: str) -> NDArray[np.float64]:
    """``x`` as a finite float64 array of the shape named by ``dims``.

    Complex arrays are refused (never cut to their real part), and so are
    entries whose magnitude exceeds :data:`MAX_MAGNITUDE` (``1e150``).

    Args:
        x: the array given by the caller.
        name: its argument name, for the message (``"bids"``).
        dims: the expected axes, comma separated, batch first (``"B, n"``).

    Returns:
        ``x`` as ``float64`` (a copy only where a conversion is needed).
    """
    try:
        raw = np.asarray(x)
        is_complex = raw.dtype.kind == "c"
        if not is_complex:
            arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array [{dims}], got {x!r}") from err
    if is_complex:
        raise ValueError(
            f"{name} must be a real float64 array [{dims}], got complex dtype "
            f"{raw.dtype} (it is not cut to its real part)"
        )
    ndim = dims.count(",") + 1
    if arr.ndim != ndim:
        hint = ""
        if arr.ndim == ndim - 1:
            hint = f" (the batch axis B is required: pass {name}[None] for one market)"
        raise ValueError(
            f"{name} must have shape [{dims}], got shape {arr.shape}{hint}"
        )
    if 0 in arr.shape[1:]:
        raise ValueError(
            f"{name} must have shape [{dims}] with no empty axis, got shape {arr.shape}"
        )
    if not np.isfinite(arr).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise ValueError(f"{name} must be finite, got {arr[idx]} at index {idx}")
    big = np.abs(arr) > MAX_MAGNITUDE
    if big.any():
        idx = tuple(int(i) for i in np.argwhere(big)[0])
        raise ValueError(
            f"{name} must have magnitude <= {MAX_MAGNITUDE:g}, got {arr[idx]} "
            f"at index {idx}"
        )
    return arr


def check_nonneg(arr: NDArray[np.float64], name: str) -> None:
    """Reject negative entries (bids, asks, values are prices: >= 0)."""
    if arr.size and arr.min() < 0:
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(f"{name} must be >= 0, got {arr[idx]} at index {idx}")


def check_positive(arr: NDArray[np.float64], name: str) -> None:
    """Reject entries <= 0 (quality scores divide payments)."""
    if arr.size and arr.min() <= 0:
        idx = tuple(int(i) for i in np.argwhere(arr <= 0)[0])
        raise ValueError(f"{name} must be > 0, got {arr[idx]} at index {idx}")


def check_weights(
    weights: ArrayLike, batch: int, name: str = "weights"
) -> NDArray[np.float64]:
    """Attention weights ``alpha`` as ``[B, K]``: finite, >= 0, descending.

    Args:
        weights: ``[K]`` (the same slots in every market) or ``[B, K]``.
        batch: ``B``, the number of markets.
        name: argument name for the message.

    Returns:
        ``float64 [B, K]`` (a broadcast view when ``[K]`` was given).
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim == 1:
        w = as_batch(w[None], name, "1, K")
        w = np.broadcast_to(w, (batch, w.shape[1]))
    else:
        w = as_batch(w, name, "B, K")
        if w.shape[0] != batch:
            raise ValueError(
                f"{name} must have shape [K] or [B, K] with B={batch}, got {w.shape}"
            )
    check_nonneg(w, name)
    if w.shape[1] > 1:
        rising = np.diff(w, axis=1) > 0
        if rising.any():
            b, j = (int(i) for i in np.argwhere(rising)[0])
            raise ValueError(
                f"{name} must be sorted descending (alpha_1 >= alpha_2 >= ...), got "
                f"{w[b, j]} < {w[b, j + 1]} at market {b}, slots {j} and {j + 1}"
            )
    return w


def check_reserve(reserve: Any) -> float:
    """A reserve price: a finite float >= 0."""
    try:
        r = float(reserve)
    except (TypeError, ValueError) as err:
        raise ValueError(f"reserve must be a number >= 0, got {reserve!r}") from err
    if not math.isfinite(r) or r < 0:
        raise ValueError(f"reserve must be a finite number >= 0, got {reserve!r}")
    return r


def check_k(k: Any) -> float:
    """The share ``k`` of the k-double auction / call market: a float in [0, 1]."""
    try:
        kk = float(k)
    except (TypeError, ValueError) as err:
        raise ValueError(f"k must be a number in [0, 1], got {k!r}") from err
    if not 0.0 <= kk <= 1.0:
        raise ValueError(f"k must be in [0, 1], got {k!r}")
    return kk


def check_unknown(
    cls_name: str, params: Mapping[str, Any], known: Iterable[str]
) -> None:
    """Reject keyword parameters a mechanism does not have, listing those it has."""
    if params:
        bad = ", ".join(sorted(params))
        raise ValueError(
            f"{cls_name} got unknown parameter(s) {bad}; known: {', '.join(known)}"
        )
