"""Input checks shared by every mechanism: one place, one wording of each error.

Every check raises :class:`~attn_env.errors.UserError` (a ``ValueError``;
:class:`~attn_env.errors.ConfigError` for a mechanism's parameters) naming the
bad value and what was expected. Arrays always carry a leading batch axis; a
single market is ``x[None]``.

The accepted range. Every price, value, weight and quality entry, and the
reserve, is 0 or has a magnitude in ``[MIN_MAGNITUDE, MAX_MAGNITUDE] =
[1e-150, 1e150]`` (quality: in that range, never 0). The product of two such
numbers is then 0 or a *normal* float64 in ``[1e-300, 1e300]``: never inf,
never a subnormal whose rounding error is large against the number itself. On
this range every mechanism's payments are finite, and no winner pays more than
its bid (a trading seller receives no less than its ask) beyond a relative
rounding of :data:`IR_RTOL` (see ``docs/mechanisms.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.checks import is_real, show
from attn_env.errors import ConfigError, UserError

__all__ = [
    "IR_RTOL",
    "MAX_MAGNITUDE",
    "MIN_MAGNITUDE",
    "as_batch",
    "as_batch_sign",
    "as_nonneg_batch",
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

#: smallest non-zero magnitude accepted: products of two accepted numbers stay
#: normal floats (>= 1e-300 > 2.2e-308), so rounding stays relative.
MIN_MAGNITUDE = 1e-150

#: relative rounding within which the mechanisms promise individual
#: rationality on the accepted range: ``pay <= bid * alloc * (1 + IR_RTOL)``
#: (and a seller's receipt ``>= ask * (1 - IR_RTOL)``). The worst case is VCG,
#: about ``(K + 6) * 2**-53`` for ``K`` slots: 1e-12 covers ``K`` up to 8,000.
IR_RTOL = 1e-12

_RANGE = f"0 or a magnitude in [{MIN_MAGNITUDE:g}, {MAX_MAGNITUDE:g}]"


def as_batch(x: ArrayLike, name: str, dims: str) -> NDArray[np.float64]:
    """``x`` as a finite float64 array of the shape named by ``dims``.

    See :func:`as_batch_sign`, which also says whether ``x`` is ``>= 0``."""
    return as_batch_sign(x, name, dims)[0]


def as_nonneg_batch(x: ArrayLike, name: str, dims: str) -> NDArray[np.float64]:
    """:func:`as_batch` then :func:`check_nonneg` (prices: ``>= 0``), with the
    sign read off the range check instead of a pass of its own."""
    arr, nonneg = as_batch_sign(x, name, dims)
    if not nonneg:
        check_nonneg(arr, name)
    return arr


def as_batch_sign(
    x: ArrayLike, name: str, dims: str
) -> tuple[NDArray[np.float64], bool]:
    """``x`` as a finite float64 array of the shape named by ``dims``, and
    whether it is known to be ``>= 0`` (False: not checked, may be).

    Complex arrays are refused (never cut to their real part), and so are
    non-zero entries whose magnitude lies outside ``[MIN_MAGNITUDE,
    MAX_MAGNITUDE]`` (``[1e-150, 1e150]``).

    Args:
        x: the array given by the caller.
        name: its argument name, for the message (``"bids"``).
        dims: the expected axes, comma separated, batch first (``"B, n"``).

    Returns:
        ``(x as float64, nonneg)``: a copy only where a conversion is needed.
    """
    try:
        raw = np.asarray(x)
        is_complex = raw.dtype.kind == "c"
        if not is_complex:
            arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as err:
        raise UserError(
            f"{name} must be a numeric array [{dims}], got {show(x)}"
        ) from err
    if is_complex:
        raise UserError(
            f"{name} must be a real float64 array [{dims}], got complex dtype "
            f"{raw.dtype} (it is not cut to its real part)"
        )
    ndim = dims.count(",") + 1
    if arr.ndim != ndim:
        hint = ""
        if arr.ndim == ndim - 1:
            hint = f" (the batch axis B is required: pass {name}[None] for one market)"
        raise UserError(f"{name} must have shape [{dims}], got shape {arr.shape}{hint}")
    if 0 in arr.shape[1:]:
        raise UserError(
            f"{name} must have shape [{dims}] with no empty axis, got shape {arr.shape}"
        )
    lo, hi = (arr.min(), arr.max()) if arr.size else (0.0, 0.0)
    if 0.0 <= lo and hi <= MAX_MAGNITUDE:
        # the common case in two passes (NaN fails the test): finite, >= 0,
        # none too large; then only the tiny ones are left to look for
        if lo >= MIN_MAGNITUDE or not ((arr > 0.0) & (arr < MIN_MAGNITUDE)).any():
            return arr, True
    if not np.isfinite(arr).all():
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise UserError(f"{name} must be finite, got {arr[idx]} at index {idx}")
    mag = np.abs(arr)
    bad = (mag > MAX_MAGNITUDE) | ((mag < MIN_MAGNITUDE) & (mag > 0))
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(
            f"{name} entries must be {_RANGE}, got {float(arr[idx])!r} at index {idx}"
        )
    return arr, False


def check_nonneg(arr: NDArray[np.float64], name: str) -> None:
    """Reject negative entries (bids, asks, values are prices: >= 0)."""
    if arr.size and arr.min() < 0:
        idx = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise UserError(f"{name} must be >= 0, got {arr[idx]} at index {idx}")


def check_positive(arr: NDArray[np.float64], name: str) -> None:
    """Reject entries <= 0 (quality scores divide payments)."""
    if arr.size and arr.min() <= 0:
        idx = tuple(int(i) for i in np.argwhere(arr <= 0)[0])
        raise UserError(f"{name} must be > 0, got {arr[idx]} at index {idx}")


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
    try:
        w = np.asarray(weights)
    except (TypeError, ValueError) as err:  # ragged nesting
        raise UserError(
            f"{name} must be a numeric array [K] or [B, K], got {show(weights)}"
        ) from err
    if w.ndim == 1:
        # checked as the one row it is, then broadcast (the same messages)
        w = as_batch(w[None], name, "1, K")
        if batch:
            _descending(w, name)
        return np.broadcast_to(w, (batch, w.shape[1]))
    w = as_batch(w, name, "B, K")
    if w.shape[0] != batch:
        raise UserError(
            f"{name} must have shape [K] or [B, K] with B={batch}, got {w.shape}"
        )
    return _descending(w, name)


def _descending(w: NDArray[np.float64], name: str) -> NDArray[np.float64]:
    """``w [B, K]`` after checking it is >= 0 and descending along each row."""
    check_nonneg(w, name)
    if w.shape[1] > 1:
        rising = np.diff(w, axis=1) > 0
        if rising.any():
            b, j = (int(i) for i in np.argwhere(rising)[0])
            raise UserError(
                f"{name} must be sorted descending (alpha_1 >= alpha_2 >= ...), got "
                f"{w[b, j]} < {w[b, j + 1]} at market {b}, slots {j} and {j + 1}"
            )
    return w


def check_reserve(reserve: Any) -> float:
    """A reserve price: a real number (not a bool), 0 or in ``[1e-150, 1e150]``."""
    if not is_real(reserve) or not (
        reserve == 0 or MIN_MAGNITUDE <= reserve <= MAX_MAGNITUDE
    ):
        raise ConfigError(
            f"reserve must be a number >= 0, {_RANGE}, got {show(reserve)}"
        )
    return float(reserve)


def check_k(k: Any) -> float:
    """The share ``k`` of the k-double auction / call market: a real in [0, 1]."""
    if not is_real(k) or not 0.0 <= k <= 1.0:
        raise ConfigError(f"k must be a number in [0, 1], got {show(k)}")
    return float(k)


def check_unknown(
    cls_name: str, params: Mapping[str, Any], known: Iterable[str]
) -> None:
    """Reject keyword parameters a mechanism does not have, listing those it has."""
    if params:
        bad = ", ".join(sorted(params))
        raise ConfigError(
            f"{cls_name} got unknown parameter(s) {bad}; known: {', '.join(known)}"
        )
