"""The ``attention`` source: r and alpha from MiniLM's attention maps, via a bank.

Each market of a round draws (numpy only, no model call, no loop over markets):

1. a query q uniformly from the bank's queries;
2. ``n_buyers`` distinct candidates uniformly from q's candidate set; buyer i's
   relevance is ``r`` of its candidate, ``r_raw`` from the bank mapped into
   [0, 1] within q's candidate set by ``relevance`` (``logistic`` of the z-score,
   default, or ``max``: divided by the largest);
3. a page layout p of q uniformly; alpha is that layout's ``n_slots``-slot page
   (sums to 1, sorted descending: the position effect);
4. theta from ``draw_values(rng, ..., dist, low, high)``;
5. (no draw) each buyer's ``group``, an index into ``group_names``: its
   candidate's vertical (``groups: vertical``, default; the corpus's verticals,
   sorted) or whether it is of the query's own vertical (``groups: on_topic``;
   names ``off_topic``, ``on_topic``).

So buyer i's value for slot j is ``theta_i * r_i * alpha_j``. The definitions of
r and alpha are in :mod:`attn_env.valuations.model` (``lift``, the default
r, in :mod:`attn_env.valuations.lift`) and the bank layout in
:mod:`attn_env.valuations.bank`. The bank is opened once (memory-mapped); when
none exists for the settings, a bank is built on first use, with a warning.

Keyword parameters (``valuation_params`` of the environment):

- bank settings: ``layers``, ``heads``, ``source``, ``score``, ``lift_heads``,
  ``max_query_tokens``,
  ``max_candidate_tokens``, ``n_queries``, ``candidates_per_query``,
  ``own_fraction``, ``pages``, ``max_slots``, ``seed`` (see ``BankSettings``);
- ``corpus``: folder with ``queries.jsonl`` and ``candidates.jsonl`` (default: shipped);
- ``bank_dir``: parent folder of banks (default ``$ATTN_MARKET_CACHE`` or
  ``~/.cache/attn-market/banks``); ``bank_path``: open this bank folder as it is;
- ``model_dir``: a local BERT-like model folder (default: the shipped MiniLM);
- ``device`` (``auto``), ``batch_size`` (64): used only when building;
- ``build``: ``auto`` (build when missing) or ``never`` (raise instead);
- ``relevance``: ``logistic`` (default) or ``max``, the map of ``r_raw`` into
  [0, 1] (applied at load time: not part of the bank key);
- ``groups``: ``vertical`` (default) or ``on_topic``, how ads are labelled
  (step 5; for fairness by group, ``attn_env.integrity.fairness``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.checks import check_device
from attn_env.errors import ConfigError, UserError
from attn_env.valuations.bank import (
    RELEVANCE_MAPS,
    Bank,
    BankSettings,
    Corpus,
    build_bank,
    find_bank,
    load_bank,
    load_corpus,
    map_relevance,
)
from attn_env.valuations.base import VALUE_DISTS, Draw, draw_values

__all__ = ["AttentionSource", "check_source_options"]

log = logging.getLogger(__name__)
BUILD_MODES = ("auto", "never")
GROUPINGS = ("vertical", "on_topic")
"How draws label ads: by the candidate's vertical, or on/off the query's vertical."
SOURCE_OPTIONS = (
    "corpus",
    "bank_dir",
    "bank_path",
    "model_dir",
    "device",
    "batch_size",
    "build",
    "relevance",
    "groups",
)
"valuation_params that are not bank settings."
PATH_OPTIONS = ("corpus", "bank_dir", "bank_path", "model_dir")
"Source options that name a folder."


def check_source_options(**options: Any) -> None:
    """``ConfigError`` naming the first bad source option (not a bank setting).

    Checked before a bank is built or opened: ``device``, ``batch_size``,
    ``build``, ``relevance`` and ``groups``, where given, and the folders
    (``corpus``, ``bank_dir``, ``bank_path``, ``model_dir``): null or a
    non-empty path string.
    """
    for name in PATH_OPTIONS:
        value = options.get(name)
        if value is not None and not (
            isinstance(value, str | Path) and str(value).strip()
        ):
            raise ConfigError(
                f"{name} must be a folder path (a non-empty string), got {value!r}"
            )
    if "device" in options:
        check_device(options["device"])
    if "batch_size" in options:
        b = options["batch_size"]
        if isinstance(b, bool) or not isinstance(b, int | np.integer) or b < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {b!r}")
    if "build" in options and options["build"] not in BUILD_MODES:
        raise ConfigError(
            f"build must be one of {', '.join(BUILD_MODES)}, got {options['build']!r}"
        )
    if "relevance" in options and options["relevance"] not in RELEVANCE_MAPS:
        raise ConfigError(
            f"relevance must be one of {', '.join(RELEVANCE_MAPS)}, "
            f"got {options['relevance']!r}"
        )
    if "groups" in options and options["groups"] not in GROUPINGS:
        raise ConfigError(
            f"groups must be one of {', '.join(GROUPINGS)}, got {options['groups']!r}"
        )


class AttentionSource:
    """theta from a distribution; r and alpha sampled from an attention bank."""

    name = "attention"

    def __init__(
        self,
        dist: str = "uniform",
        low: float = 0.0,
        high: float = 1.0,
        *,
        corpus: str | Path | None = None,
        bank_dir: str | Path | None = None,
        bank_path: str | Path | None = None,
        model_dir: str | Path | None = None,
        device: str = "auto",
        batch_size: int = 64,
        build: str = "auto",
        relevance: str = "logistic",
        groups: str = "vertical",
        **settings: Any,
    ) -> None:
        if dist not in VALUE_DISTS:
            raise ConfigError(
                f"unknown value distribution {dist!r}; known: {', '.join(VALUE_DISTS)}"
            )
        check_source_options(
            device=device,
            batch_size=batch_size,
            build=build,
            relevance=relevance,
            groups=groups,
            corpus=corpus,
            bank_dir=bank_dir,
            bank_path=bank_path,
            model_dir=model_dir,
        )
        self.dist, self.low, self.high = dist, float(low), float(high)
        data = load_corpus(corpus)
        if bank_path is not None:
            if settings:
                raise ConfigError(
                    f"bank_path opens a built bank as it is; drop the settings "
                    f"{', '.join(sorted(settings))}"
                )
            self.bank = load_bank(bank_path)
        else:
            self.bank = self._open_or_build(
                BankSettings.from_params(settings, SOURCE_OPTIONS),
                data=data,
                bank_dir=bank_dir,
                model_dir=model_dir,
                device=device,
                batch_size=batch_size,
                build=build,
            )
        self._relevance = map_relevance(self.bank.relevance_raw, relevance)
        if groups == "on_topic":
            self.group_names = ("off_topic", "on_topic")
            self._group = np.asarray(self.bank.own, dtype=np.int64)
        else:
            self.group_names, self._group = _verticals(data, self.bank)
        self._alpha_by_k: dict[int, NDArray[np.float64]] = {}

    @staticmethod
    def _open_or_build(
        settings: BankSettings,
        *,
        data: Corpus,
        bank_dir: str | Path | None,
        model_dir: str | Path | None,
        device: str,
        batch_size: int,
        build: str,
    ) -> Bank:
        """Open the bank of these settings, building it first when it is missing."""
        from attn_env.valuations.model import model_identity

        model_id = model_identity(model_dir)
        found = find_bank(settings, model_id, data.content_hash, bank_dir)
        if found is None:
            if build == "never":
                raise FileNotFoundError(
                    "no attention bank for these settings; build it with "
                    "`attn-market valuations build CONFIG` or pass build='auto'"
                )
            msg = (
                "attn-market: no attention bank for these settings; building one now "
                f"({settings.n_queries or 'all'} queries x "
                f"{settings.candidates_per_query} candidates), cached for later runs"
            )
            print(msg, file=sys.stderr)  # always shown, whatever logging is set up
            log.info(msg)
            found = build_bank(
                settings,
                data,
                bank_dir=bank_dir,
                model_dir=model_dir,
                device=device,
                batch_size=batch_size,
            )
        return load_bank(found)

    @property
    def relevance(self) -> NDArray[np.float64]:
        """``[Q, C]`` relevance in [0, 1] of every query's candidates."""
        return self._relevance

    def page_alpha(self, n_slots: int) -> NDArray[np.float64]:
        """``[Q, P, n_slots]`` alpha of every layout's n_slots-slot page."""
        return self._alpha(n_slots)

    def _alpha(self, n_slots: int) -> NDArray[np.float64]:
        """``[Q, P, n_slots]`` alpha of every layout's n_slots-slot page (cached)."""
        alpha = self._alpha_by_k.get(n_slots)
        if alpha is None:
            alpha = np.ascontiguousarray(
                self.bank.alpha[:, :, n_slots - 1, :n_slots], dtype=np.float64
            )
            self._alpha_by_k[n_slots] = alpha
        return alpha

    def draw(
        self, rng: np.random.Generator, batch: int, n_buyers: int, n_slots: int
    ) -> Draw:
        """Draw ``batch`` markets (see the module docstring)."""
        n_q, n_c = self._relevance.shape
        if not 1 <= n_buyers <= n_c:
            raise ConfigError(
                f"n_buyers must be in [1, {n_c}] (the bank's candidates per query), "
                f"got {n_buyers}"
            )
        if not 1 <= n_slots <= self.bank.max_slots:
            raise ConfigError(
                f"n_slots must be in [1, {self.bank.max_slots}] (the bank's "
                f"max_slots), got {n_slots}; build a bank with a larger max_slots"
            )
        theta = draw_values(rng, (batch, n_buyers), self.dist, self.low, self.high)
        q = rng.integers(n_q, size=batch)
        pick = _sample_without_replacement(rng, batch, n_c, n_buyers)
        relevance = self._relevance[q[:, None], pick]
        layout = rng.integers(self.bank.pages, size=batch)
        alpha = self._alpha(n_slots)[q, layout]
        group = None if self._group is None else self._group[q[:, None], pick]
        return Draw(theta=theta, relevance=relevance, alpha=alpha, group=group)


def _verticals(
    data: Corpus, bank: Bank
) -> tuple[tuple[str, ...], NDArray[np.int64] | None]:
    """The corpus's verticals and each bank candidate's, ``[Q, C]`` int64.

    ``((), None)`` when the bank was built from another corpus than ``data``
    (a ``bank_path`` opened with a different ``corpus``): no labels then.
    """
    if bank.manifest.get("corpus_hash") != data.content_hash:
        return (), None
    cands = np.asarray(bank.candidates)
    if cands.max() >= len(data.cand_verticals):
        raise UserError(
            f"{bank.path / 'candidates.npy'}: candidate index {int(cands.max())} "
            f"is past the corpus's {len(data.cand_verticals)} candidates, though "
            "the manifest names this corpus; rebuild the bank"
        )
    names = tuple(sorted(set(data.cand_verticals)))
    index = {v: i for i, v in enumerate(names)}
    of_cand = np.array([index[v] for v in data.cand_verticals], dtype=np.int64)
    return names, of_cand[cands]


def _sample_without_replacement(
    rng: np.random.Generator, batch: int, n: int, k: int
) -> NDArray[np.int64]:
    """``[batch, k]`` ordered uniform samples of ``k`` distinct values of ``range(n)``.

    Draw i picks uniformly among the ``n - i`` values not yet taken: a uniform
    rank x among them, mapped to the x-th untaken value, the least fixed point
    of ``y = x + #{taken <= y}`` (reached from y = x in at most i steps).
    O(k^2) operations on arrays of ``batch``, never a ``[batch, n]`` array.
    """
    out = np.empty((k, batch), dtype=np.int64)
    for i in range(k):
        x = rng.integers(0, n - i, size=batch)
        y = x
        while True:
            y_next = x + (out[:i] <= y).sum(axis=0)
            if np.array_equal(y_next, y):
                break
            y = y_next
        out[i] = y
    return out.T
