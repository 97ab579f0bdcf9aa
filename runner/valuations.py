"""The work behind ``attn-market valuations``: the bank a config names, the
relevance of candidates to a query, and the attention heatmap of a page.

The command module parses options and prints; everything computed lives here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from attn_env.errors import UserError

__all__ = [
    "MAX_PAGE_TOKENS",
    "bank_for",
    "max_page_slots",
    "relevance_of",
    "render_heatmap",
    "settings_of",
    "top_candidates",
]


def _params(config: str | None) -> dict[str, Any]:
    if config is None:
        return {}
    from attn_env.config import load_config

    return dict(load_config(config).env.valuation_params)


def settings_of(config: str | None) -> tuple[Any, dict[str, Any]]:
    """Bank settings and the other source options of a config's
    ``env.valuation_params`` (the defaults without a config)."""
    params = _params(config)
    from attn_env.valuations.attention import SOURCE_OPTIONS, check_source_options
    from attn_env.valuations.bank import BankSettings

    options = {k: params[k] for k in SOURCE_OPTIONS if k in params}
    check_source_options(**options)
    settings = BankSettings.from_params(
        {k: v for k, v in params.items() if k not in SOURCE_OPTIONS}, SOURCE_OPTIONS
    )
    return settings, options


def bank_for(
    config: str | None,
    device: str | None = None,
    bank_dir: str | None = None,
    batch_size: int | None = None,
    progress: bool = True,
    verbose: bool = False,
) -> tuple[Path, Any, dict[str, Any]]:
    """The bank path, its settings and the source options of ``config``
    (found, shipped or built; a ``bank_path`` is taken as given). ``device``,
    ``bank_dir`` and ``batch_size`` override the config's."""
    from attn_env.checks import check_device
    from attn_env.valuations.bank import build_bank, load_corpus

    settings, opts = settings_of(config)
    named = device is not None
    device = device or opts.get("device", "auto")
    check_device(device, "--device" if named else "valuation_params.device")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if "bank_path" in opts:
        return Path(opts["bank_path"]), settings, opts
    corpus = load_corpus(opts.get("corpus"))
    path = build_bank(
        settings,
        corpus,
        bank_dir=bank_dir or opts.get("bank_dir"),
        model_dir=opts.get("model_dir"),
        device=device,
        batch_size=batch_size if batch_size is not None else opts.get("batch_size", 64),
        progress=progress,
        verbose=verbose,
    )
    return path, settings, opts


MAX_PAGE_TOKENS = 512
"Position limit of the shipped MiniLM (and of BERT-like encoders)."


def max_page_slots(settings: Any) -> int:
    """The most slots of full-length candidates a page of ``settings`` holds."""
    per_slot = settings.max_candidate_tokens + 1  # the candidate and its [SEP]
    return (MAX_PAGE_TOKENS - 2 - settings.max_query_tokens) // per_slot


def relevance_of(lm: Any, query: str, texts: list[str], settings: Any) -> np.ndarray:
    """r of each text to ``query`` with the settings' attention spec."""
    import dataclasses

    from attn_env.valuations import relevance

    return relevance(
        query,
        texts,
        model=lm,
        max_query_tokens=settings.max_query_tokens,
        max_candidate_tokens=settings.max_candidate_tokens,
        **dataclasses.asdict(settings.spec),
    )


def top_candidates(
    lm: Any, query: str, corpus: Any, settings: Any, k: int, seed: int, sample: int = 96
) -> list[str]:
    """The ``k`` texts of highest r among a seeded sample of the corpus."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(
        len(corpus.cand_texts), size=min(sample, len(corpus.cand_texts)), replace=False
    )
    texts = [corpus.cand_texts[i] for i in idx]
    r = relevance_of(lm, query, texts, settings)
    return [texts[i] for i in np.argsort(-r, kind="stable")[:k]]


def render_heatmap(
    lm: Any,
    query: str,
    candidates: list[str],
    settings: Any,
    out: Path,
    relevance: np.ndarray | None = None,
) -> Path:
    """Draw the query-token rows of the renormalised map over a page; atomic PNG write.

    Rows: the query's word pieces. Columns: the page's text tokens (query, then
    slot 1..K; [CLS]/[SEP] dropped, rows renormalised as in ``model.py``).
    Vertical lines mark slot boundaries; each slot's alpha (its share of the
    query's attention to the slots, in page order) and, when given, its r
    (``relevance``, one per candidate) are written above it.
    """
    from attn_env.figures import new_figure, save_png
    from attn_env.valuations.model import (
        assemble_pages,
        page_attention,
        segment_mass,
        tokenize,
    )

    spec = settings.spec
    q = tokenize(lm.tokenizer, [query], settings.max_query_tokens)[0]
    c = tokenize(lm.tokenizer, list(candidates), settings.max_candidate_tokens)
    page = assemble_pages(lm.tokenizer, [q], [c])
    attn = page_attention(lm, page, spec)
    k = len(c)
    mass = segment_mass(attn, page.segment, k + 1, spec)[0]
    alpha = mass[1:] / mass[1:].sum()

    seg = page.segment[0]
    text_cols = np.flatnonzero(seg >= 0)
    rows = np.flatnonzero(seg == 0)
    a = attn[0].double().cpu().numpy()[:, text_cols]
    a = a / a.sum(axis=1, keepdims=True)
    a = a[rows]
    tokens = lm.tokenizer.convert_ids_to_tokens(page.input_ids[0][text_cols].tolist())
    col_seg = seg[text_cols]

    width = max(8.0, 0.22 * len(text_cols) + 2.5)
    fig, ax = new_figure(figsize=(width, 1.4 + 0.3 * len(rows) + 1.6))
    im = ax.imshow(a, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(len(rows)), [tokens[i] for i in range(len(rows))], fontsize=8)
    ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=7)
    for j in range(k + 1):
        span = np.flatnonzero(col_seg == j)
        if j > 0:
            ax.axvline(span[0] - 0.5, color="cyan", linewidth=1.5)
        label = "query" if j == 0 else f"slot {j}\nalpha={alpha[j - 1]:.2f}"
        if j > 0 and relevance is not None:
            label += f"\nr={relevance[j - 1]:.2f}"
        ax.text(
            (span[0] + span[-1]) / 2,
            -0.7,
            label,
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_ylabel("query token (attending)")
    ax.set_xlabel("page token (attended): the query, then slot 1..K")
    ax.set_title(
        f"attention of the query's tokens over the page ({spec.describe()}; "
        "[CLS]/[SEP] dropped, rows renormalised)",
        fontsize=9,
        pad=34 if relevance is None else 44,
    )
    fig.colorbar(im, ax=ax, fraction=0.025, pad=0.01, label="attention")
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_png(fig, out, dpi=130)
