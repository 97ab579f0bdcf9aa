"""What every mechanism shares, and the three families with their ``clear``.

A mechanism's family follows from its class: :class:`OneSided` (position
auctions: bids for slots), :class:`TwoSided` (bids and asks) or
:class:`Matching` (a value per buyer and slot). Each base declares the
``clear`` signature the environment calls; ``family`` is a read-only name
derived from the base, kept for code that reads it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

from attn_env.errors import ConfigError, UserError
from attn_env.mechanisms._validate import check_reserve, check_unknown
from attn_env.mechanisms.outcome import Outcome

FAMILIES = ("one_sided", "two_sided", "matching")

__all__ = [
    "FAMILIES",
    "Matching",
    "Mechanism",
    "OneSided",
    "TwoSided",
    "rank_desc",
    "top_desc",
]


class _Family:
    """``cls.family``: the family of the nearest base that declares one.

    Read-only on instances. A class may still set ``family = "one_sided"``
    itself (a plug-in written against the string API); it then shadows this.
    """

    def __get__(self, obj: Any, cls: type) -> str:
        for base in cls.__mro__:
            fam = base.__dict__.get("_family")
            if fam:
                return fam
        return ""

    def __set__(self, obj: Any, value: Any) -> None:
        raise AttributeError("a mechanism's family follows from its class")


class Mechanism(ABC):
    """Base of all mechanisms: holds ``reserve`` and the tie-break generator.

    Args:
        reserve: reserve price per unit: 0 or in ``[1e-150, 1e150]``.
        seed: seed of the generator used for tie-breaks when ``clear`` is given no
            ``rng``; ``None`` draws fresh entropy.
        **params: family-specific parameters; unknown names raise ``ConfigError``.
    """

    name: ClassVar[str] = ""
    #: ``one_sided`` (bids for slots), ``two_sided`` (bids and asks) or
    #: ``matching`` (a value per buyer and slot): what ``clear`` takes. Derived
    #: from the family base class (:class:`OneSided`, ...).
    family = _Family()
    _family: ClassVar[str] = ""
    #: a sequential market (the CDA): traders leave once their unit has traded.
    sequential: ClassVar[bool] = False
    #: family-specific keyword parameters and their defaults.
    params: ClassVar[dict[str, Any]] = {}

    def __init__(self, *, reserve: float = 0.0, seed: int | None = None, **params: Any):
        self.reserve = check_reserve(reserve)
        self.seed = seed
        try:
            self._rng = np.random.default_rng(seed)
        except (TypeError, ValueError) as err:
            raise ConfigError(
                f"seed must be an int >= 0 or None, got {seed!r}"
            ) from err
        unknown = {k: v for k, v in params.items() if k not in self.params}
        check_unknown(type(self).__name__, unknown, ["reserve", "seed", *self.params])
        for key, default in self.params.items():
            setattr(self, key, params.get(key, default))

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """Every keyword the constructor accepts, with its default.

        ``reserve`` and ``seed`` (every mechanism's) and the class's own
        ``params``: what a config's ``mechanism_params`` may set.
        """
        return {"reserve": 0.0, "seed": None, **cls.params}

    @classmethod
    def n_sellers_for(cls, n_buyers: int, n_sellers: int = 0) -> int:
        """Sellers in a market of this mechanism: the one rule for the default.

        Two-sided markets have ``n_sellers`` sellers, ``n_buyers`` when it is
        0 (unset); the other families have none.
        """
        if cls.family != "two_sided":
            return 0
        return n_sellers or n_buyers

    @abstractmethod
    def clear(self, *args: Any, **kwargs: Any) -> Outcome:
        """Clear ``B`` markets; the family base fixes the arguments."""

    def _gen(self, rng: np.random.Generator | None) -> np.random.Generator:
        """The generator for this call: ``rng`` if given, else the mechanism's own."""
        if rng is None:
            return self._rng
        if not isinstance(rng, np.random.Generator):
            raise UserError(f"rng must be a numpy.random.Generator, got {rng!r}")
        return rng

    def __repr__(self) -> str:
        extra = "".join(f", {k}={getattr(self, k)!r}" for k in self.params)
        return f"{type(self).__name__}(reserve={self.reserve!r}{extra})"


class OneSided(Mechanism):
    """A position auction: buyers bid per unit of attention for ranked slots."""

    _family = "one_sided"

    @abstractmethod
    def clear(
        self,
        bids: ArrayLike,
        weights: ArrayLike | None = None,
        rng: np.random.Generator | None = None,
    ) -> Outcome:
        """Clear ``B`` auctions: ``bids [B, n]``, slot attention ``weights [K]``
        or ``[B, K]`` (descending)."""


class TwoSided(Mechanism):
    """A market of buyers' bids and sellers' asks, one unit per trader."""

    _family = "two_sided"

    @abstractmethod
    def clear(
        self,
        bids: ArrayLike,
        asks: ArrayLike,
        rng: np.random.Generator | None = None,
        buyer_active: ArrayLike | None = None,
        seller_active: ArrayLike | None = None,
    ) -> Outcome:
        """Clear ``B`` markets: ``bids [B, n]``, ``asks [B, m]``; inactive
        traders (``False`` in the masks) stay out of the book."""


class Matching(Mechanism):
    """A matching of buyers to slots from a value per buyer and slot."""

    _family = "matching"

    @abstractmethod
    def clear(
        self,
        values: ArrayLike,
        weights: ArrayLike | None = None,
        rng: np.random.Generator | None = None,
    ) -> Outcome:
        """Match ``B`` markets: ``values [B, n, K]``; ``weights`` are the
        slots' attention, the units of ``alloc``."""


def rank_desc(
    score: NDArray[np.float64],
    rng: np.random.Generator,
    ignore: NDArray[np.bool_] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Indices that sort each row of ``score`` descending, ties in random order.

    Rows without ties (the common case with continuous bids) take one argsort;
    only rows with equal scores pay for a second, random key. Every order of the
    tied entries is equally likely, so no index is favoured.

    Args:
        score: ``float64 [B, n]``.
        rng: generator for the tie-break keys.
        ignore: optional ``bool [B, n]`` of entries whose order among themselves
            does not matter (out of the market): ties between two of them do not
            send the row to the slow path.

    Returns:
        ``(order, sorted)``, both ``[B, n]``: ``order[b, r]`` is the entry of rank
        ``r`` (0 = highest) and ``sorted[b, r]`` its score.
    """
    order = np.argsort(-score, axis=1)
    srt = np.take_along_axis(score, order, axis=1)
    if score.shape[1] < 2:
        return order, srt
    equal = srt[:, 1:] == srt[:, :-1]
    if ignore is not None:
        out = np.take_along_axis(ignore, order, axis=1)
        equal &= ~(out[:, 1:] & out[:, :-1])
    tied = equal.any(axis=1)
    if tied.any():
        rows = np.flatnonzero(tied)
        key = rng.random((rows.size, score.shape[1]))
        order[rows] = np.lexsort((key, -score[rows]), axis=-1)
        # the tied entries swapped places but their scores are equal: srt holds
    return order, srt


#: most bits of a score's mantissa :func:`top_desc` replaces by the column
#: index (rows of up to 2**20 entries; wider ones take :func:`rank_desc`).
_INDEX_BITS = 20


def top_desc(
    score: NDArray[np.float64],
    n_top: int,
    rng: np.random.Generator,
    ignore_negative: bool = False,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The first ``n_top`` columns of :func:`rank_desc`, without an argsort.

    A position auction needs the ``K + 1`` highest scores and who holds the
    top ``K``. Each score's lowest ``ceil(log2 n)`` mantissa bits are replaced
    by its column and the row is sorted as integers (``np.sort``: several
    times faster than ``argsort``, and the order of non-negative floats is the
    order of their bit patterns). Where two neighbours agree on the remaining
    bits (equal scores, or equal up to those low bits) the row goes through
    :func:`rank_desc` itself, and in the same order: the generator is drawn
    exactly as ``rank_desc(score, rng, ignore)`` draws it, and the outcome is
    the same array for array. Every other row's order is exact.

    Args:
        score: ``float64 [B, n]``, ``>= 0`` (``-0.0`` included).
        n_top: ranks wanted, ``>= 1`` (at most ``n`` are returned).
        rng: generator for the tie-break keys.
        ignore_negative: entries ``< 0`` are out of the market (``ignore =
            score < 0`` in :func:`rank_desc`; they may hold any negative
            value): ties among them do not count, and which of them fills a
            rank past the last entry ``>= 0`` is unspecified.

    Returns:
        ``(order, sorted)``, both ``[B, min(n_top, n)]``: the columns of the
        ``n_top`` highest scores, highest first, and those scores; equal to
        ``rank_desc(...)[i][:, :n_top]`` (``order`` up to the unspecified
        entries above).
    """
    n_rows, n = score.shape
    n_top = min(n_top, n)
    bits = max(1, (n - 1).bit_length())
    if n < 2 or bits > _INDEX_BITS:
        ignore = (score < 0.0) if ignore_negative else None
        order, srt = rank_desc(score, rng, ignore=ignore)
        return order[:, :n_top], srt[:, :n_top]
    low = (1 << bits) - 1
    key = score + 0.0  # -0.0 -> 0.0: equal scores get equal high bits
    kv = key.view(np.int64)
    kv &= ~low
    kv |= np.arange(n)
    kv.sort(axis=1)
    order = kv[:, ::-1][:, :n_top] & low
    # score[b, order[b, r]] through one flat index (take_along_axis is slower)
    at = order + np.arange(0, n_rows * n, n)[:, None]
    srt = np.take(score.reshape(-1), at)
    kv >>= bits  # the high bits, in place
    near = kv[:, 1:] == kv[:, :-1]
    if ignore_negative:
        near &= kv[:, 1:] >= 0  # entries out of the market tie freely
    if near.any():
        rows = np.flatnonzero(near.any(axis=1))
        sub = score[rows]
        ignore = (sub < 0.0) if ignore_negative else None
        o_sub, s_sub = rank_desc(sub, rng, ignore=ignore)
        order[rows] = o_sub[:, :n_top]
        srt[rows] = s_sub[:, :n_top]
    return order, srt
