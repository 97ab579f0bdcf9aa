"""Registry of market mechanisms: ``names()``, ``make(name, **params)``, ``register``.

Every mechanism is a small object whose ``clear(...)`` works on a batch of ``B``
independent markets at once and returns an :class:`Outcome`. Its class says
its family: a subclass of :class:`OneSided`, :class:`TwoSided` or
:class:`Matching`, each declaring the ``clear`` the environment calls
(``family`` is the read-only name of that base: ``one_sided``, ``two_sided``,
``matching``). Each class lists its parameters and their defaults
(:func:`parameters`), checked when it is built (``ConfigError``).

A user's own mechanism joins the registry with :func:`register` (a subclass of
a family base, or of :class:`Mechanism` naming its ``family``), after which
every env, ``simulate`` and YAML config can name it; the envs also take a
mechanism *instance* directly. See ``docs/custom_mechanism.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

from attn_env.errors import ConfigError, UserError
from attn_env.mechanisms._base import FAMILIES, Matching, Mechanism, OneSided, TwoSided
from attn_env.mechanisms._crossing import walrasian_price
from attn_env.mechanisms.matching import blocking_pairs
from attn_env.mechanisms.outcome import Outcome

# name -> (module, class) for the built-ins (imported on first use), or the
# class itself for registered ones.
_REGISTRY: dict[str, tuple[str, str] | type[Mechanism]] = {
    "first_price": ("attn_env.mechanisms.position", "FirstPrice"),
    "second_price": ("attn_env.mechanisms.position", "SecondPrice"),
    "gsp": ("attn_env.mechanisms.position", "GSP"),
    "vcg": ("attn_env.mechanisms.position", "VCG"),
    "segment_auction": ("attn_env.mechanisms.answer", "SegmentAuction"),
    "prominence_auction": ("attn_env.mechanisms.answer", "ProminenceAuction"),
    "k_double": ("attn_env.mechanisms.double", "KDouble"),
    "mcafee": ("attn_env.mechanisms.double", "McAfee"),
    "call_market": ("attn_env.mechanisms.double", "CallMarket"),
    "cda": ("attn_env.mechanisms.double", "CDA"),
    "assignment": ("attn_env.mechanisms.matching", "Assignment"),
    "stable_matching": ("attn_env.mechanisms.matching", "StableMatching"),
}

# markets cleared on step schedules: made by name, but not in names() (the envs
# clear one order per trader); attn_env/mechanisms/schedules.py
_SCHEDULE_MARKETS = {
    "schedule_call_market": ("attn_env.mechanisms.schedules", "ScheduleCallMarket")
}

__all__ = [
    "FAMILIES",
    "Matching",
    "Mechanism",
    "OneSided",
    "Outcome",
    "TwoSided",
    "blocking_pairs",
    "build",
    "family",
    "make",
    "mechanism_class",
    "n_sellers",
    "name_of",
    "names",
    "names_of_family",
    "parameters",
    "register",
    "walrasian_price",
]


def names() -> list[str]:
    """All mechanism names: docs/design.md#mechanisms order, then registered ones."""
    return list(_REGISTRY)


def mechanism_class(name: str) -> type[Mechanism]:
    """The class registered under ``name``."""
    if isinstance(name, str) and name in _SCHEDULE_MARKETS:
        module, cls = _SCHEDULE_MARKETS[name]
        return getattr(importlib.import_module(module), cls)
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ConfigError(f"unknown mechanism {name!r}; known: {', '.join(names())}")
    entry = _REGISTRY[name]
    if isinstance(entry, tuple):
        module, cls = entry
        return getattr(importlib.import_module(module), cls)
    return entry


def family(name: str | Mechanism) -> str:
    """``"one_sided"``, ``"two_sided"`` or ``"matching"`` of a name or an instance."""
    if isinstance(name, Mechanism):
        return type(name).family
    return mechanism_class(name).family


def names_of_family(fam: str) -> list[str]:
    """The registered mechanisms of one family, in registry order."""
    if fam not in FAMILIES:
        raise UserError(f"unknown family {fam!r}; known: {', '.join(FAMILIES)}")
    return [n for n in names() if family(n) == fam]


def name_of(mechanism: str | Mechanism) -> str:
    """The name of a mechanism given by name or as an instance."""
    if isinstance(mechanism, Mechanism):
        return type(mechanism).name or type(mechanism).__name__
    return mechanism


def make(name: str, **params: Any) -> Mechanism:
    """Build mechanism ``name`` with keyword parameters (e.g. ``reserve=0.1``)."""
    return mechanism_class(name)(**params)


def build(
    mechanism: str | Mechanism, params: dict[str, Any] | None = None
) -> Mechanism:
    """The mechanism of a market: ``mechanism`` itself if an instance (its
    parameters are set: ``params`` must be empty), else ``make(mechanism,
    **params)``."""
    if isinstance(mechanism, Mechanism):
        if params:
            raise ConfigError(
                "mechanism_params must be empty when the mechanism is an instance "
                f"(its parameters are set), got {', '.join(map(str, params))}"
            )
        return mechanism
    return make(mechanism, **(params or {}))


def parameters(mechanism: str | Mechanism | type[Mechanism]) -> dict[str, Any]:
    """Every keyword parameter of a mechanism (name, instance or class) and its
    default: what a config's ``mechanism_params`` may set."""
    if isinstance(mechanism, type) and issubclass(mechanism, Mechanism):
        cls = mechanism
    elif isinstance(mechanism, Mechanism):
        cls = type(mechanism)
    else:
        cls = mechanism_class(mechanism)
    return cls.parameters()


def n_sellers(mechanism: str | Mechanism, n_buyers: int, n_sellers: int = 0) -> int:
    """Sellers in a market of ``mechanism``: ``n_sellers``, or ``n_buyers`` when
    0, in a two-sided market; 0 in the others (the one place of this rule)."""
    cls = type(mechanism) if isinstance(mechanism, Mechanism) else None
    cls = cls or mechanism_class(mechanism)
    return cls.n_sellers_for(n_buyers, n_sellers)


def register(name: str, cls: type[Mechanism]) -> None:
    """Add a user's mechanism class under ``name`` (for configs, envs, simulate).

    Args:
        name: the name configs use; must not shadow a registered mechanism.
        cls: a subclass of :class:`OneSided`, :class:`TwoSided` or
            :class:`Matching` (or of :class:`Mechanism` setting ``family`` to
            one of ``FAMILIES``) whose ``clear`` follows that family's
            signature.

    Raises:
        UserError: a taken or empty name, or a class that is not a mechanism.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise UserError(f"mechanism name must be an identifier, got {name!r}")
    if name in _REGISTRY:
        raise UserError(f"mechanism {name!r} is already registered")
    if not (isinstance(cls, type) and issubclass(cls, Mechanism)):
        raise UserError(
            f"register({name!r}, cls): cls must subclass "
            f"attn_env.mechanisms.Mechanism, got {cls!r}"
        )
    if cls.family not in FAMILIES:
        raise UserError(
            f"{cls.__name__}.family must be one of {', '.join(FAMILIES)}, "
            f"got {cls.family!r}"
        )
    _REGISTRY[name] = cls
