"""Position models: the attention (or click-through rate) alpha_j of slot j.

The standard position auction (Edelman, Ostrovsky & Schwarz 2007; Varian 2007)
gives slot j a click-through rate ``alpha_j`` that decays with j, and bidder i's
value for it is ``theta_i * alpha_j``. The ``uniform`` source takes one from its
``slot_weights`` option, without any transformer:

=====================================================  ===========================
``slot_weights``                                       ``alpha_j``, j = 1..K
=====================================================  ===========================
``null`` (default)                                     1 for every slot
``[a_1, ..., a_K]``                                    ``a_j`` as given
``dcg`` or ``{curve: dcg}``                            ``1 / log2(j + 1)``
``{curve: geometric, gamma: g}``                       ``g^(j-1)``, g in (0, 1]
``{curve: cascade, click: c, continue: q}``            ``c * ((1 - c) q)^(j-1)``
=====================================================  ===========================

An explicit list is **validated, not normalised**: it holds exactly
``n_slots`` finite numbers in (0, 1], non-increasing (slot 1 gets the most
attention, the order in which mechanisms fill slots); they are used as given,
as click-through rates or shares of attention, so that the values ``theta *
alpha`` keep their units. The named curves give slot 1 the weight 1 (``dcg``,
``geometric``; ``gamma = 1`` is the default, equal slots) or the click
probability c (``cascade``).

Cascade model (Craswell, Zoeter, Taylor & Ramsey 2008; with a continuation
probability as in Aggarwal, Feldman, Muthukrishnan & Pál 2008 and Kempe &
Mahdian 2008): the user reads the slots from the top; a slot that is read is
clicked with probability ``click`` = c in (0, 1), after which the user leaves;
after a slot without a click the user reads the next one with probability
``continue`` = q in (0, 1] (q = 1: Craswell et al.'s pure cascade). Slot j is
read with probability ``((1 - c) q)^(j-1)`` and clicked with probability
``alpha_j = c ((1 - c) q)^(j-1)``: with click probabilities that do not depend on
the ad, the cascade is a geometric curve of ratio ``(1 - c) q`` scaled by c.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.checks import ConfigError, is_real

__all__ = ["CURVES", "PositionModel"]

CURVES = ("dcg", "geometric", "cascade")
"The named position curves."
_CURVE_PARAMS: dict[str, tuple[str, ...]] = {
    "dcg": (),
    "geometric": ("gamma",),
    "cascade": ("click", "continue"),
}
_EXAMPLE = {
    "dcg": "dcg",
    "geometric": "{curve: geometric, gamma: 0.7}",
    "cascade": "{curve: cascade, click: 0.3, continue: 0.9}",
}


@dataclass(frozen=True)
class PositionModel:
    """A validated ``slot_weights`` option; :meth:`weights` gives alpha for K slots.

    Build it with :meth:`parse`. ``curve`` is ``equal`` (the default, every slot
    1), ``list`` (``values`` as given) or one of :data:`CURVES` with ``params``.
    """

    curve: str = "equal"
    "``equal``, ``list``, ``dcg``, ``geometric`` or ``cascade``."
    values: tuple[float, ...] = ()
    "The explicit weights when ``curve == 'list'``."
    params: Mapping[str, float] = field(default_factory=dict)
    "The curve's parameters (``gamma``; ``click`` and ``continue``)."

    @classmethod
    def parse(cls, spec: Any) -> PositionModel:
        """Check a ``slot_weights`` value (see the module docstring).

        Args:
            spec: ``None``, a list of numbers, a curve name or a mapping
                ``{curve: NAME, **params}``.

        Returns:
            The position model.

        Raises:
            ConfigError: one line naming the bad value and what was expected.
        """
        if spec is None:
            return cls()
        if isinstance(spec, list | tuple | np.ndarray):
            return cls("list", _check_list(spec))
        if isinstance(spec, str):
            spec = {"curve": spec}
        if not isinstance(spec, Mapping):
            raise ConfigError(
                f"slot_weights must be null, a list of numbers in (0, 1], a curve "
                f"name ({', '.join(CURVES)}) or a mapping {{curve: NAME, ...}}, "
                f"got {spec!r}"
            )
        curve = spec.get("curve")
        if curve not in CURVES:
            raise ConfigError(
                f"unknown slot_weights curve {curve!r}; known: {', '.join(CURVES)}"
            )
        params = {k: v for k, v in spec.items() if k != "curve"}
        expected = _CURVE_PARAMS[curve]
        if set(params) != set(expected):
            raise ConfigError(
                f"slot_weights curve {curve!r} takes "
                f"{', '.join(expected) or 'no parameters'}, got "
                f"{', '.join(sorted(params)) or 'none'}; e.g. {_EXAMPLE[curve]}"
            )
        _check_params(curve, params)
        return cls(curve, params={k: float(params[k]) for k in expected})

    def weights(self, n_slots: int) -> NDArray[np.float64]:
        """``alpha [n_slots]``, non-increasing, in (0, 1].

        Raises:
            ConfigError: an explicit list whose length is not ``n_slots``.
        """
        j = np.arange(n_slots, dtype=np.float64)  # j - 1 for slots j = 1..K
        if self.curve == "equal":
            return np.ones(n_slots)
        if self.curve == "list":
            if len(self.values) != n_slots:
                raise ConfigError(
                    f"slot_weights has {len(self.values)} entries "
                    f"{list(self.values)}, expected n_slots = {n_slots}"
                )
            return np.array(self.values, dtype=np.float64)
        if self.curve == "dcg":
            return 1.0 / np.log2(j + 2.0)
        if self.curve == "geometric":
            return self.params["gamma"] ** j
        c, q = self.params["click"], self.params["continue"]
        return c * ((1.0 - c) * q) ** j

    def describe(self) -> str:
        """A short label, e.g. ``geometric(gamma=0.7)``."""
        if self.curve == "list":
            return f"list{list(self.values)}"
        args = ", ".join(f"{k}={v:g}" for k, v in self.params.items())
        return f"{self.curve}({args})" if args else self.curve


def _check_list(spec: Any) -> tuple[float, ...]:
    """The explicit weights, or ``ConfigError`` naming what is wrong."""
    items = list(spec)
    if not items:
        raise ConfigError("slot_weights is an empty list; expected n_slots numbers")
    for j, w in enumerate(items, start=1):
        if not (is_real(w) and 0.0 < w <= 1.0):
            raise ConfigError(
                f"slot_weights[{j - 1}] (slot {j}) must be a number in (0, 1], "
                f"got {w!r}"
            )
    values = tuple(float(w) for w in items)
    if any(b > a for a, b in itertools.pairwise(values)):
        raise ConfigError(
            f"slot_weights must be non-increasing (slot 1 gets the most "
            f"attention), got {list(values)}"
        )
    return values


def _check_params(curve: str, params: Mapping[str, Any]) -> None:
    """``ConfigError`` naming the first curve parameter out of range."""
    ranges = {
        "gamma": ("(0, 1]", lambda x: 0.0 < x <= 1.0),
        "click": ("(0, 1)", lambda x: 0.0 < x < 1.0),
        "continue": ("(0, 1]", lambda x: 0.0 < x <= 1.0),
    }
    for name, value in params.items():
        interval, ok = ranges[name]
        if not (is_real(value) and ok(float(value))):
            raise ConfigError(
                f"slot_weights {curve} {name} must be a number in {interval}, "
                f"got {value!r}"
            )
