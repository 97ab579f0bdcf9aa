"""Relevance score ``lift``: a query's attention to a candidate beyond a neutral one.

For the pair page ``[CLS] q [SEP] c [SEP]`` and one attention head (layer l,
head h), with [CLS]/[SEP] columns dropped and rows renormalised (they are
attention sinks), the mass the query's tokens put on the candidate is

    m_lh(q, c) = (1 / |q|) sum_{t in q} sum_{u in c} Ã^{l,h}[t, u]

It grows with the candidate's length and with tokens every query attends to,
whatever it means. Dividing by the mass that a content-free query ``n``
(:data:`NEUTRAL_QUERY`) puts on the same candidate removes that
candidate-specific bias (the calibration of in-context re-ranking, Chen et al.
2024, "Attention in Large Language Models Yields Efficient Zero-Shot
Re-Rankers"). Over a set H of heads chosen on the dev probe
(``AttentionSpec.lift_heads``):

    r_raw = sigmoid( mean_{(l, h) in H} log( m_lh(q, c) / m_lh(n, c) ) )

in (0, 1): 0.5 when the query attends to the candidate no more than a
content-free query does, towards 1 the more it does. It depends on the pair
only, never on the other candidates scored with it. The other scores
(``maxsim``, ``mass``) are read from the aggregated map
(:func:`attn_env.valuations.model.pair_score`); :func:`pair_relevance` serves
all three. torch is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.valuations.model import (
    SEG_QUERY,
    AttentionSpec,
    LoadedModel,
    Page,
    assemble_pages,
    layer_attentions,
    page_attention,
    pair_score,
    tokenize,
)

__all__ = ["NEUTRAL_QUERY", "head_mass", "pair_relevance"]

NEUTRAL_QUERY = "something"
"The content-free query whose attention calibrates ``lift``."


def head_mass(
    lm: LoadedModel, page: Page, heads: tuple[tuple[int, int], ...]
) -> NDArray[np.float64]:
    """``m_lh(q, c)`` of each pair page for each 1-based ``(layer, head)``.

    Returns:
        ``float64 [N, len(heads)]``, each entry in [0, 1].
    """
    import torch

    n_heads = int(lm.model.config.num_attention_heads)
    for layer, head in heads:
        if layer > lm.n_layers or head > n_heads:
            raise ValueError(
                f"lift head (layer {layer}, head {head}) is outside the model's "
                f"{lm.n_layers} layers x {n_heads} heads"
            )
    attentions = layer_attentions(lm, page, max(layer for layer, _ in heads))
    seg = torch.as_tensor(page.segment, device=lm.device)
    text = (seg >= 0).float()
    rows = (seg == SEG_QUERY).float()
    cand = (seg == 1).float()
    out = []
    with torch.inference_mode():
        for layer, head in heads:
            a = attentions[layer - 1][:, head - 1].float() * text[:, None, :]
            a = a / a.sum(dim=-1, keepdim=True).clamp_min(1e-12)
            on_cand = (a * cand[:, None, :]).sum(dim=-1)  # [N, T]
            out.append((on_cand * rows).sum(dim=1) / rows.sum(dim=1))
    return torch.stack(out, dim=1).double().cpu().numpy()


def pair_relevance(
    lm: LoadedModel,
    queries: list[list[int]],
    candidates: list[list[int]],
    spec: AttentionSpec,
    batch_size: int = 64,
    neutral: dict[tuple[int, ...], NDArray[np.float64]] | None = None,
) -> NDArray[np.float64]:
    """``r_raw`` of each (query, candidate) pair of token ids by ``spec.score``.

    Args:
        lm: the loaded encoder.
        queries: word-piece ids of each pair's query (no special tokens).
        candidates: word-piece ids of each pair's candidate.
        spec: which score (``lift``, ``maxsim`` or ``mass``) and its settings.
        batch_size: pages per forward pass.
        neutral: the caller's store of the neutral query's head masses by
            candidate ids (``lift`` only), filled as candidates come: a bank
            build passes one for all its pairs, so each candidate's neutral
            page runs once however many queries it is scored for.

    Returns:
        ``float64 [N]`` in [0, 1].
    """
    if len(queries) != len(candidates):
        raise ValueError(f"{len(queries)} queries but {len(candidates)} candidates")
    out = []
    neutral = {} if neutral is None else neutral
    for start in range(0, len(queries), batch_size):
        q = queries[start : start + batch_size]
        c = candidates[start : start + batch_size]
        page = assemble_pages(lm.tokenizer, q, [[x] for x in c])
        if spec.score != "lift":
            out.append(pair_score(page_attention(lm, page, spec), page.segment, spec))
            continue
        out.append(_lift(lm, page, c, spec, neutral))
    return np.concatenate(out) if out else np.zeros(0)


def _lift(
    lm: LoadedModel,
    page: Page,
    cands: list[list[int]],
    spec: AttentionSpec,
    neutral: dict[tuple[int, ...], NDArray[np.float64]],
) -> NDArray[np.float64]:
    """The ``lift`` of one batch of pair pages (see the module docstring)."""
    keys = [tuple(ids) for ids in cands]
    missing = list(dict.fromkeys(k for k in keys if k not in neutral))
    if missing:
        neutral_q = tokenize(lm.tokenizer, [NEUTRAL_QUERY], 8)[0]
        neutral_page = assemble_pages(
            lm.tokenizer, [neutral_q] * len(missing), [[list(k)] for k in missing]
        )
        masses = head_mass(lm, neutral_page, spec.lift_heads)
        neutral.update(zip(missing, masses, strict=True))
    m_pair = head_mass(lm, page, spec.lift_heads)
    m_neutral = np.stack([neutral[k] for k in keys])
    log_ratio = np.log(np.maximum(m_pair, 1e-12)) - np.log(np.maximum(m_neutral, 1e-12))
    return _sigmoid(log_ratio.mean(axis=1))


def _sigmoid(x: Any) -> NDArray[np.float64]:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))
