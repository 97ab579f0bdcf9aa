"""Checks every layer shares: the config error type, the unknown-key check and
bounded numbers.

Foundation layer: imports only ``attn_env.errors``, so mechanisms, valuation
sources and the typed config can all reject bad input the same way. A number
given by a user is checked here *before* it reaches numpy or torch: a bool is
not a number, a 400-digit integer is refused by name (never an
``OverflowError``), and every message shows a long number shortened.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from attn_env.errors import ConfigError, UserError

__all__ = [
    "DEVICES",
    "ConfigError",
    "UserError",
    "check_agent_actions",
    "check_device",
    "check_int",
    "check_one_of",
    "check_real",
    "is_int",
    "is_real",
    "reject_unknown",
    "show",
]

DEVICES = "auto, cpu, cuda, cuda:N or mps"
"The torch devices a config or an option may name."
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?|mps")


def check_device(device: Any, name: str = "device") -> str:
    """``device`` if it is one of :data:`DEVICES`, else ``ConfigError`` naming it."""
    if not (isinstance(device, str) and _DEVICE.fullmatch(device)):
        raise ConfigError(f"{name} must be one of {DEVICES}, got {show(device)}")
    return device


def is_real(x: Any) -> bool:
    """A finite int or float (numpy scalars included), not a bool.

    An integer too large for a float (``10 ** 400``) is not real here: it is
    refused by the caller's message, never turned into an ``OverflowError``.
    """
    if not isinstance(x, int | float | np.number) or isinstance(x, bool | np.bool_):
        return False
    if isinstance(x, np.complexfloating):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond float64
        return False


def is_int(x: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(x, int | np.integer) and not isinstance(x, bool | np.bool_)


def show(value: Any, limit: int = 60) -> str:
    """``repr(value)`` on one short line: a 400-digit integer as its head, tail and
    digit count, a bool as YAML writes it, any other long repr cut with ``...``."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if is_int(value):
        text = str(int(value)) if abs(int(value)) < 10**4000 else None
        if text is None:
            return "an integer of over 4,000 digits"
        digits = len(text.lstrip("-"))
        if digits > 24:
            return f"{text[:8]}...{text[-4:]} ({digits} digits)"
        return text
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _no_bool(value: Any) -> str:
    return " (true/false is not a number)" if isinstance(value, bool | np.bool_) else ""


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f">= {low:,} and at most {high:,}"
    if low is not None:
        return f">= {low:,}"
    if high is not None:
        return f"<= {high:,}"
    return ""


def check_int(
    value: Any, name: str, low: int | None = None, high: int | None = None
) -> int:
    """``value`` as an ``int`` if it is an integer in ``[low, high]``, else one line.

    Booleans are refused (``k: true`` is not 1). The message names ``name`` and
    the range, so a cap reads as ``n_buyers must be an integer >= 1 and at most
    10,000``.
    """
    ok = is_int(value)
    if ok:
        value = int(value)
        ok = (low is None or value >= low) and (high is None or value <= high)
    if not ok:
        what = " ".join(("an integer", _range(low, high))).rstrip()
        raise ConfigError(f"{name} must be {what}, got {show(value)}{_no_bool(value)}")
    return value


def check_one_of(value: Any, options: Sequence[str], name: str) -> str:
    """``value`` if it is one of ``options``, else one line listing them."""
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}, got {value!r}")
    return value


def check_real(
    value: Any,
    name: str,
    low: float | None = None,
    high: float | None = None,
    *,
    above: bool = False,
) -> float:
    """``value`` as a ``float`` if it is a finite number in range, else one line.

    ``[low, high]``, or ``(low, high]`` with ``above``. Booleans are refused; an
    integer too large for a float is refused by name.
    """
    ok = is_real(value)
    if ok:
        x = float(value)
        ok = (low is None or (x > low if above else x >= low)) and (
            high is None or x <= high
        )
    if not ok:
        if above and low is not None:
            rng = f"> {low:g}" + (f" and <= {high:g}" if high is not None else "")
        elif low is not None and high is not None:
            rng = f"in [{low:g}, {high:g}]"
        elif low is not None:
            rng = f">= {low:g}"
        elif high is not None:
            rng = f"<= {high:g}"
        else:
            rng = ""
        what = f"a finite number {rng}".rstrip()
        raise ConfigError(f"{name} must be {what}, got {show(value)}{_no_bool(value)}")
    return x


def reject_unknown(
    cls: type, keys: Any, what: str, also_known: tuple[str, ...] = ()
) -> None:
    """``ConfigError`` naming every key that is not a field of dataclass ``cls``.

    Args:
        cls: the dataclass whose fields are the known keys.
        keys: the keys given (e.g. a kwargs dict).
        what: how the message calls them, e.g. ``"environment option(s)"``.
        also_known: other accepted names, listed in the message too.
    """
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise ConfigError(
            f"unknown {what} {', '.join(map(repr, unknown))}; "
            f"known: {', '.join([*known, *also_known])}"
        )


def check_agent_actions(
    x: np.ndarray, names: Sequence[str], low: float, high: float, what: str
) -> np.ndarray:
    """``x`` (agents on its last axis) if every entry is finite and in
    ``[low, high]``, else one line naming the first bad agent and ``what`` its
    action must be (a scenario env's per-agent actions)."""
    bad = ~np.isfinite(x) | (x < low) | (x > high)
    if bad.any():
        i = np.unravel_index(int(np.flatnonzero(bad)[0]), x.shape)
        raise UserError(f"action of {names[i[-1]]} must be {what}, got {x[i]!r}")
    return x
