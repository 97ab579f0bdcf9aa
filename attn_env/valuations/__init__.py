"""Valuation sources: where theta, relevance r and slot attention alpha come from.

``make_source(name, **params)`` builds one: ``uniform`` (theta from a distribution,
r = alpha = 1) or ``attention`` (r and alpha from a transformer's attention maps,
sampled from an attention bank). The attention source is imported lazily so that
``import attn_env`` never imports torch or transformers. A user's own source
joins with :func:`register_source` and is then named by ``valuation:`` like the
built-ins.

``relevance(query, candidates)`` and ``slot_attention(query, candidates)`` score
texts directly with the transformer, no bank needed (:mod:`.scoring`).
"""

from __future__ import annotations

from typing import Any

from attn_env.errors import ConfigError
from attn_env.valuations.base import Draw, ValuationSource, draw_values
from attn_env.valuations.scoring import relevance, slot_attention
from attn_env.valuations.uniform import UniformSource

__all__ = [
    "SOURCES",
    "Draw",
    "UniformSource",
    "ValuationSource",
    "draw_values",
    "make_source",
    "register_source",
    "relevance",
    "slot_attention",
    "source_class",
    "source_names",
]

SOURCES = ("uniform", "attention")
"The built-in sources."
_USER_SOURCES: dict[str, type] = {}


def source_names() -> list[str]:
    """Every valuation source: the built-ins, then registered ones."""
    return [*SOURCES, *_USER_SOURCES]


def register_source(name: str, cls: type) -> None:
    """Add a user's valuation source class under ``name``.

    Args:
        name: the name configs use (``env.valuation``); must be new.
        cls: a class built as ``cls(dist=..., low=..., high=..., **valuation_params)``
            whose instances follow :class:`ValuationSource` (``draw(rng, batch,
            n_buyers, n_slots) -> Draw``).
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"valuation source name must be an identifier, got {name!r}")
    if name in source_names():
        raise ValueError(f"valuation source {name!r} is already registered")
    if not (isinstance(cls, type) and callable(getattr(cls, "draw", None))):
        raise ValueError(
            f"register_source({name!r}, cls): cls must be a class with a draw() "
            f"method (ValuationSource), got {cls!r}"
        )
    _USER_SOURCES[name] = cls


def source_class(name: str) -> type:
    """The class of valuation source ``name`` (``source_names()``)."""
    if name == "uniform":
        return UniformSource
    if name == "attention":
        from attn_env.valuations.attention import AttentionSource

        return AttentionSource
    if isinstance(name, str) and name in _USER_SOURCES:
        return _USER_SOURCES[name]
    raise ConfigError(
        f"unknown valuation source {name!r}; known: {', '.join(source_names())}"
    )


def make_source(name: str, **params: Any) -> ValuationSource:
    """Build valuation source ``name`` (``source_names()``).

    ``fake_traffic`` (any source) wraps it in bot traffic that inflates some
    ads' r or the slots' alpha (``attn_env.valuations.fake_traffic``).
    """
    fake = params.pop("fake_traffic", None)
    source = source_class(name)(**params)
    if fake is None:
        return source
    from attn_env.valuations.fake_traffic import FakeTrafficSource

    return FakeTrafficSource(source, **fake)
