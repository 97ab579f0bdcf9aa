"""Valuation sources: where theta, relevance r and slot attention alpha come from.

``make_source(name, **params)`` builds one: ``uniform`` (theta from a distribution,
r = alpha = 1) or ``attention`` (r and alpha from a transformer's attention maps,
sampled from an attention bank). The attention source is imported lazily so that
``import attn_env`` never imports torch or transformers.
"""

from __future__ import annotations

from typing import Any

from attn_env.valuations.base import Draw, ValuationSource, draw_values
from attn_env.valuations.uniform import UniformSource

__all__ = [
    "SOURCES",
    "Draw",
    "UniformSource",
    "ValuationSource",
    "draw_values",
    "make_source",
]

SOURCES = ("uniform", "attention")


def make_source(name: str, **params: Any) -> ValuationSource:
    """Build valuation source ``name`` (``uniform`` or ``attention``)."""
    if name == "uniform":
        return UniformSource(**params)
    if name == "attention":
        from attn_env.valuations.attention import AttentionSource

        return AttentionSource(**params)
    raise ValueError(f"unknown valuation source {name!r}; known: {', '.join(SOURCES)}")
