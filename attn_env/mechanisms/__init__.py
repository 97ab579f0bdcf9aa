"""Registry of market mechanisms: ``names()`` and ``make(name, **params)``.

Every mechanism is a small object whose ``clear(...)`` works on a batch of ``B``
independent markets at once and returns an :class:`Outcome`.
"""

from __future__ import annotations

from typing import Any

from attn_env.mechanisms._base import Mechanism
from attn_env.mechanisms._crossing import walrasian_price
from attn_env.mechanisms.matching import blocking_pairs
from attn_env.mechanisms.outcome import Outcome

# name -> (module, class): one flat table, filled in by the family modules.
_REGISTRY: dict[str, tuple[str, str]] = {
    "first_price": ("attn_env.mechanisms.position", "FirstPrice"),
    "second_price": ("attn_env.mechanisms.position", "SecondPrice"),
    "gsp": ("attn_env.mechanisms.position", "GSP"),
    "vcg": ("attn_env.mechanisms.position", "VCG"),
    "k_double": ("attn_env.mechanisms.double", "KDouble"),
    "mcafee": ("attn_env.mechanisms.double", "McAfee"),
    "call_market": ("attn_env.mechanisms.double", "CallMarket"),
    "cda": ("attn_env.mechanisms.double", "CDA"),
    "assignment": ("attn_env.mechanisms.matching", "Assignment"),
    "stable_matching": ("attn_env.mechanisms.matching", "StableMatching"),
}

ONE_SIDED = ("first_price", "second_price", "gsp", "vcg")
TWO_SIDED = ("k_double", "mcafee", "call_market", "cda")
MATCHING = ("assignment", "stable_matching")

__all__ = [
    "MATCHING",
    "ONE_SIDED",
    "TWO_SIDED",
    "Mechanism",
    "Outcome",
    "blocking_pairs",
    "family",
    "make",
    "names",
    "walrasian_price",
]


def names() -> list[str]:
    """The names of all mechanisms, in DESIGN.md section 2 order."""
    return list(_REGISTRY)


def family(name: str) -> str:
    """``"one_sided"``, ``"two_sided"`` or ``"matching"``."""
    _check_name(name)
    if name in ONE_SIDED:
        return "one_sided"
    return "two_sided" if name in TWO_SIDED else "matching"


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown mechanism {name!r}; known: {', '.join(names())}")


def make(name: str, **params: Any):
    """Build mechanism ``name`` with keyword parameters (e.g. ``reserve=0.1``)."""
    import importlib

    _check_name(name)
    module, cls = _REGISTRY[name]
    return getattr(importlib.import_module(module), cls)(**params)
