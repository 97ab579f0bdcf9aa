"""Checks every layer shares: the config error type and the unknown-key check.

Foundation layer: imports only ``attn_env.errors``, so mechanisms, valuation
sources and the typed config can all reject bad input the same way.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import numpy as np

from attn_env.errors import ConfigError, UserError

__all__ = [
    "DEVICES",
    "ConfigError",
    "UserError",
    "check_device",
    "is_real",
    "reject_unknown",
]

DEVICES = "auto, cpu, cuda, cuda:N or mps"
"The torch devices a config or an option may name."
_DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?|mps")


def check_device(device: Any, name: str = "device") -> str:
    """``device`` if it is one of :data:`DEVICES`, else ``ValueError`` naming it."""
    if not (isinstance(device, str) and _DEVICE.fullmatch(device)):
        raise ValueError(f"{name} must be one of {DEVICES}, got {device!r}")
    return device


def is_real(x: Any) -> bool:
    """A finite int or float (numpy scalars included), not a bool."""
    return (
        isinstance(x, int | float | np.number)
        and not isinstance(x, bool)
        and math.isfinite(x)
    )


def reject_unknown(
    cls: type, keys: Any, what: str, also_known: tuple[str, ...] = ()
) -> None:
    """``ValueError`` naming every key that is not a field of dataclass ``cls``.

    Args:
        cls: the dataclass whose fields are the known keys.
        keys: the keys given (e.g. a kwargs dict).
        what: how the message calls them, e.g. ``"environment option(s)"``.
        also_known: other accepted names, listed in the message too.
    """
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(keys) - set(known))
    if unknown:
        raise ValueError(
            f"unknown {what} {', '.join(map(repr, unknown))}; "
            f"known: {', '.join([*known, *also_known])}"
        )
