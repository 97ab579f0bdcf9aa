"""Ranking metrics on a probe set: P@1, nDCG@k, MRR and the distractor-first rate.

Each query's candidates are ranked by score, highest first. Ties are broken
*pessimistically* (a positive tied with a non-positive ranks below it), so a
constant score earns no credit. Gains are binary: 1 for a positive, 0 for a
distractor or a negative.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from attn_env.valuations.probes import ProbeSet

__all__ = ["evaluate_probe", "ranking_metrics", "score_probe"]


def _ranks(scores: NDArray[np.float64], positive: NDArray[np.bool_]) -> NDArray:
    """Order of candidates, best first, with ties broken against positives."""
    # lexsort: last key is primary; among equal scores non-positives come first
    return np.lexsort((positive.astype(int), -scores))


def ranking_metrics(
    scores: Sequence[NDArray[np.floating]], kinds: Sequence[Sequence[str]], k: int = 4
) -> dict[str, float]:
    """Mean P@1, nDCG@k, MRR and distractor-first rate over queries.

    Args:
        scores: per query, one score per candidate.
        kinds: per query, ``positive`` / ``distractor`` / ``negative`` per candidate.
        k: cut-off of nDCG.

    Returns:
        ``queries``, ``p_at_1``, ``ndcg_at_{k}``, ``mrr``, ``distractor_first``.
    """
    if len(scores) != len(kinds) or not scores:
        raise ValueError(
            f"need as many score lists as queries (> 0), got {len(scores)} and "
            f"{len(kinds)}"
        )
    p1, ndcg, rr, dfirst = [], [], [], []
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    for s, kind in zip(scores, kinds, strict=True):
        s = np.asarray(s, dtype=np.float64)
        kind = np.asarray(kind)
        if s.shape != kind.shape:
            raise ValueError(f"{s.size} scores for {kind.size} candidates")
        pos = kind == "positive"
        order = _ranks(s, pos)
        gains = pos[order].astype(np.float64)
        p1.append(gains[0])
        dfirst.append(float(kind[order[0]] == "distractor"))
        rr.append(1.0 / (1 + int(np.argmax(gains))))
        ideal = np.sort(gains)[::-1]
        top = min(k, len(gains))
        ndcg.append(
            float(gains[:top] @ discount[:top]) / float(ideal[:top] @ discount[:top])
        )
    return {
        "queries": len(scores),
        "p_at_1": float(np.mean(p1)),
        f"ndcg_at_{k}": float(np.mean(ndcg)),
        "mrr": float(np.mean(rr)),
        "distractor_first": float(np.mean(dfirst)),
    }


def score_probe(
    probe: ProbeSet, scorer: Callable[[str, list[str]], NDArray]
) -> list[NDArray[np.float64]]:
    """``scorer(query, candidates)`` on every item of ``probe``."""
    return [
        np.asarray(scorer(item.query, item.candidates), np.float64)
        for item in probe.items
    ]


def evaluate_probe(
    probe: ProbeSet, scorer: Callable[[str, list[str]], NDArray], k: int = 4
) -> dict[str, float]:
    """:func:`ranking_metrics` of ``scorer`` on ``probe``."""
    return ranking_metrics(
        score_probe(probe, scorer), [item.kinds for item in probe.items], k
    )
