"""Exposure fairness of a config's market, and what an exposure floor costs.

:func:`fairness` plays the config as ``simulate`` does (same seed, same
markets) while a :class:`FairnessRecorder` keeps every round's attention,
merit, surplus and ad labels, and reduces them with
:func:`attn_env.integrity.fairness.fairness_report`: by bidder, and by vertical
where the valuation source labels ads (``attention``). :func:`floor_costs`
replays the config under several ``exposure_floor`` values and tabulates
revenue, efficiency and the least bidder's share of the page's attention
against them. The recorder holds ``O(episodes x rounds x n_buyers)`` numbers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.config import ExperimentConfig, validate_experiment
from attn_env.errors import UserError
from attn_env.integrity.fairness import fairness_report
from runner.simulate import play_log

__all__ = [
    "MERITS",
    "FairnessRecorder",
    "default_floors",
    "fairness",
    "fairness_of",
    "floor_costs",
]

MERITS = ("relevance", "value")
"""What an ad deserves: ``relevance`` r of the ad to the query (Singh and
Joachims' merit: the user's view) or ``value``, theta * r (the advertiser's)."""


def _check_merit(merit: str) -> str:
    if merit not in MERITS:
        raise UserError(f"merit must be one of {', '.join(MERITS)}, got {merit!r}")
    return merit


class FairnessRecorder:
    """The rounds fairness needs, kept per kept episode (a ``runner.simulate``
    recorder).

    After the run, :meth:`arrays` gives ``alloc``, ``merit``, ``utility``
    ``[M, n]``, ``page [M]`` (the page's attention ``alpha_1 + ... +
    alpha_min(n, K)``), ``lottery [M]`` and ``group [M, n]`` (``None``
    without labels), ``M`` = episodes x rounds.
    """

    _KEYS = ("alloc", "merit", "utility", "page", "lottery", "group")

    def __init__(self, merit: str = "relevance") -> None:
        self.merit = _check_merit(merit)
        self.names: list[str] = []
        self.group_names: tuple[str, ...] = ()
        self._round: list[dict[str, NDArray]] = []
        self._done: dict[str, list[NDArray]] = {k: [] for k in self._KEYS}

    def start(self, env: Any) -> None:
        self.n = env.spec.n_buyers
        self.names = list(env.agents[: self.n])
        self.group_names = tuple(getattr(env.core.source, "group_names", ()))

    def add_round(self, info: Mapping[str, Any]) -> None:
        n = self.n
        merit = info["relevance"] if self.merit == "relevance" else info["value"]
        alpha = np.asarray(info["alpha"], dtype=np.float64)
        B = alpha.shape[0]
        group = info.get("group")
        self._round.append(
            {
                "alloc": np.asarray(info["alloc"], dtype=np.float64)[:, :n],
                "merit": np.asarray(merit, dtype=np.float64)[:, :n],
                "utility": np.asarray(info["utility"], dtype=np.float64)[:, :n],
                "page": alpha[:, : min(n, alpha.shape[1])].sum(axis=1),
                "lottery": np.asarray(info.get("lottery", np.zeros(B, bool))),
                "group": np.full((B, n), -1) if group is None else np.asarray(group),
            }
        )

    def end_batch(self, keep: int) -> None:
        for k in self._KEYS:
            # [keep, T, ...] -> episode-major market rounds
            stacked = np.stack([r[k] for r in self._round], axis=1)[:keep]
            self._done[k].append(stacked.reshape(-1, *stacked.shape[2:]))
        self._round = []

    def arrays(self) -> dict[str, NDArray | None]:
        out: dict[str, NDArray | None] = {
            k: np.concatenate(v) for k, v in self._done.items()
        }
        if not self.group_names:
            out["group"] = None
        return out


def _run(
    config: ExperimentConfig, merit: str, episodes: int | None, progress: bool
) -> tuple[FairnessRecorder, dict[str, Any]]:
    rec = FairnessRecorder(merit)
    log, about = play_log(config, episodes=episodes, progress=progress, recorders=[rec])
    res = log.result()
    about.update({k: res[k] for k in ("revenue", "efficiency", "welfare")})
    about.update({f"{k}_se": res.get(f"{k}_se") for k in ("revenue", "efficiency")})
    return rec, about


def fairness(
    config: ExperimentConfig,
    episodes: int | None = None,
    merit: str = "relevance",
    progress: bool = False,
) -> dict[str, Any]:
    """Exposure fairness of ``config``'s market (the markets ``simulate`` plays).

    Args:
        config: the experiment.
        episodes: override ``config.episodes``.
        merit: ``relevance`` or ``value`` (:data:`MERITS`).
        progress: show a progress bar.

    Returns:
        :func:`~attn_env.integrity.fairness.fairness_report`'s keys (with
        ``by_group`` and ``group_disparity`` per vertical where ads are
        labelled), plus ``merit``, ``floor_share`` (by bidder: its mean share of
        the page's attention), ``lottery_share``, the run's ``mechanism``,
        ``episodes``, ``seed`` and its ``revenue``, ``efficiency`` and
        ``welfare`` (with ``_se``).
    """
    rec, about = _run(config, _check_merit(merit), episodes, progress)
    report = fairness_of(rec)
    keep = ("mechanism", "episodes", "seed", "revenue", "efficiency", "welfare")
    report.update({k: v for k, v in about.items() if k.startswith(keep)})
    return report


def fairness_of(rec: FairnessRecorder) -> dict[str, Any]:
    """The fairness report of the rounds a recorder kept (see :func:`fairness`;
    without the run's ``mechanism`` ... ``welfare`` keys)."""
    a = rec.arrays()
    report = fairness_report(
        a["alloc"], a["merit"], a["utility"], rec.names, a["group"], rec.group_names
    )
    share = _page_share(a["alloc"], a["page"])
    report["floor_share"] = dict(zip(rec.names, map(float, share), strict=True))
    report["lottery_share"] = float(a["lottery"].mean())
    report["merit"] = rec.merit
    return report


def _page_share(alloc: NDArray, page: NDArray) -> NDArray:
    """Each bidder's mean share of the page's attention over market rounds."""
    ok = page > 0
    return (alloc[ok] / page[ok, None]).mean(axis=0)


def default_floors(n_buyers: int) -> list[float]:
    """``0, 1/(4n), 1/(2n), 3/(4n), 1/n``: off, up to a pure lottery."""
    return [q / (4 * n_buyers) for q in range(5)]


def floor_costs(
    config: ExperimentConfig,
    floors: Sequence[float] | None = None,
    episodes: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Revenue, efficiency and exposure of ``config`` under each exposure floor.

    Every floor replays the config from its seed; rows say the floor, the
    share of markets the lottery allocated, ``revenue`` and ``efficiency``
    (with ``_se``) and their change against the first floor given (the
    baseline, 0 by default), the least bidder's mean share of the page's
    attention (``min_share``, >= the floor up to sampling error), the
    Gini of attention across bidders and, where ads are labelled, the groups'
    demographic parity and disparate treatment ratios (``group_parity``,
    ``group_treatment``; ``None`` without labels).
    """
    n = config.env.n_buyers
    floors = default_floors(n) if floors is None else [float(f) for f in floors]
    rows: list[dict[str, Any]] = []
    for f in floors:
        env = dataclasses.replace(config.env, exposure_floor=f)
        cfg = dataclasses.replace(config, env=env)
        validate_experiment(cfg)
        rec, about = _run(cfg, "relevance", episodes, progress)
        a = rec.arrays()
        share = _page_share(a["alloc"], a["page"])
        report = fairness_report(
            a["alloc"], a["merit"], a["utility"], rec.names, a["group"], rec.group_names
        )
        groups = report.get("group_disparity", {})
        rows.append(
            {
                "floor": f,
                "lottery_share": float(a["lottery"].mean()),
                "revenue": about["revenue"],
                "revenue_se": about["revenue_se"],
                "efficiency": about["efficiency"],
                "efficiency_se": about["efficiency_se"],
                "min_share": float(share.min()),
                "gini_attention": report["gini_attention"],
                "group_parity": groups.get("demographic_parity"),
                "group_treatment": groups.get("disparate_treatment"),
            }
        )
    base = rows[0]
    for r in rows:
        for k in ("revenue", "efficiency"):
            r[f"{k}_change"] = r[k] / base[k] - 1.0 if base[k] else float("nan")
    return rows
