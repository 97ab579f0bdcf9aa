"""``attn-market valuations build|show|validate``: the attention bank from the shell.

- ``build CONFIG``: compute the bank that CONFIG's ``env.valuation_params`` name
  (reused as it is when it already exists) and print its folder.
- ``show --query "..." [--candidate TEXT ...] [--out FILE.png]``: a heatmap of the
  attention that the query's tokens pay to a page ``query | slot 1 | ... | slot K``,
  slot boundaries marked, each slot's alpha annotated.
- ``validate CONFIG``: precision@1 of r at picking a candidate of the query's own
  vertical, beside a mean-pooled cosine-embedding baseline, on the bank's sets.

``build`` and ``validate`` draw progress bars on stderr when it is a terminal;
``--no-progress`` (or ``--quiet``) turns them off. Loading the model is quiet
(no transformers log, no "Loading weights" bar) unless ``--verbose``. ``show``
checks ``--out`` before it loads the model.

torch, transformers and matplotlib are imported inside the command functions.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.errors import UserError
from attn_market.commands import check_output_file

__all__ = ["register", "render_heatmap"]


def register(subparsers: Any) -> None:
    """Add ``valuations build|show|validate`` to the ``attn-market`` parser."""
    parser = subparsers.add_parser(
        "valuations",
        help="build and inspect the attention bank (r and alpha from MiniLM)",
        description="Build and inspect the attention bank.",
    )
    sub = parser.add_subparsers(dest="valuations_command", required=True, metavar="CMD")

    build = sub.add_parser("build", help="compute the attention bank of a config")
    build.add_argument("config", help="YAML config; its env.valuation_params are used")
    build.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    build.add_argument("--bank-dir", default=None, help="parent folder of banks")
    build.add_argument("--batch-size", type=int, default=None)
    build.add_argument(
        "--quiet",
        "--no-progress",
        dest="quiet",
        action="store_true",
        help="no progress bar (none either when stderr is not a terminal)",
    )
    _add_verbose(build)
    build.set_defaults(func=_cmd_build)

    show = sub.add_parser("show", help="heatmap PNG of the attention a page receives")
    show.add_argument("--query", required=True, help="the user's query")
    show.add_argument(
        "--candidate",
        action="append",
        default=None,
        help="a slot's text (repeat for K slots); default: the K shipped "
        "candidates with the highest r among a seeded sample",
    )
    show.add_argument("--slots", type=int, default=3, help="K when no --candidate")
    show.add_argument("--config", default=None, help="YAML config for the settings")
    show.add_argument("--out", default="attention_heatmap.png", help="PNG file")
    show.add_argument("--device", default="cpu")
    show.add_argument("--seed", type=int, default=0)
    _add_verbose(show)
    show.set_defaults(func=_cmd_show)

    val = sub.add_parser("validate", help="precision@1 of r vs a cosine baseline")
    val.add_argument("config", help="YAML config; its env.valuation_params are used")
    val.add_argument("--device", default=None)
    val.add_argument("--bank-dir", default=None, help="parent folder of banks")
    val.add_argument("--json", action="store_true", help="print one JSON object")
    val.add_argument(
        "--no-progress",
        "--quiet",
        dest="quiet",
        action="store_true",
        help="no progress bars (none either when stderr is not a terminal)",
    )
    _add_verbose(val)
    val.set_defaults(func=_cmd_validate)


def _add_verbose(parser: argparse.ArgumentParser) -> None:
    """``--verbose``: let transformers log and draw its "Loading weights" bar."""
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="show the model loader's log and progress bar (quiet by default)",
    )


def _params(config: str | None) -> dict[str, Any]:
    if config is None:
        return {}
    from attn_env.config import load_config

    return dict(load_config(config).env.valuation_params)


def _split(params: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """Bank settings and the other source options of ``valuation_params``."""
    from attn_env.valuations.attention import SOURCE_OPTIONS, check_source_options
    from attn_env.valuations.bank import BankSettings

    options = {k: params[k] for k in SOURCE_OPTIONS if k in params}
    check_source_options(**options)
    settings = BankSettings.from_params(
        {k: v for k, v in params.items() if k not in SOURCE_OPTIONS}, SOURCE_OPTIONS
    )
    return settings, options


def _build(args: argparse.Namespace) -> tuple[Path, Any, dict[str, Any]]:
    from attn_env.checks import check_device
    from attn_env.valuations.bank import build_bank, load_corpus

    settings, opts = _split(_params(args.config))
    device = args.device or opts.get("device", "auto")
    check_device(device, "--device" if args.device else "valuation_params.device")
    batch_size = getattr(args, "batch_size", None)
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {batch_size}")
    if "bank_path" in opts:
        return Path(opts["bank_path"]), settings, opts
    corpus = load_corpus(opts.get("corpus"))
    path = build_bank(
        settings,
        corpus,
        bank_dir=getattr(args, "bank_dir", None) or opts.get("bank_dir"),
        model_dir=opts.get("model_dir"),
        device=device,
        batch_size=batch_size if batch_size is not None else opts.get("batch_size", 64),
        progress=not getattr(args, "quiet", False),
        verbose=getattr(args, "verbose", False),
    )
    return path, settings, opts


def _cmd_build(args: argparse.Namespace) -> int:
    from attn_env.valuations.bank import load_bank
    from attn_env.valuations.cache import shipped_bank_dir

    path, _, _ = _build(args)
    bank = load_bank(path)
    m = bank.manifest
    print(
        f"attention bank: {path}\n"
        f"  {bank.n_queries} queries x {bank.candidates_per_query} candidates, "
        f"{bank.pages} layouts of up to {bank.max_slots} slots"
    )
    if all(key in m for key in ("device", "dtype", "sequences", "seconds")):
        rate = m["sequences"] / m["seconds"] if m["seconds"] else float("nan")
        print(
            f"  built on {m['device']} ({m['dtype']}): {m['sequences']} sequences "
            f"in {m['seconds']:.1f} s ({rate:.0f}/s)"
        )
    if path.resolve().parent == shipped_bank_dir():
        print("  shipped prebuilt with attn-market (same model, corpus and settings)")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from attn_env.valuations.bank import load_bank, load_corpus, validate_bank
    from attn_env.valuations.model import load_model

    path, _, opts = _build(args)
    bank = load_bank(path)
    lm = load_model(
        opts.get("model_dir"), device=args.device or "auto", verbose=args.verbose
    )
    corpus = load_corpus(opts.get("corpus"))
    result = validate_bank(bank, corpus, lm, progress=not args.quiet)
    if args.json:
        print(json.dumps(result))
    else:
        r, cos = result["precision_at_1_r"], result["precision_at_1_cosine"]
        print(
            f"{result['queries']} queries x {result['candidates_per_query']} "
            f"candidates ({result['own_share']:.2f} own vertical = chance)\n"
            f"  precision@1 of r (attention):        {r:.3f}\n"
            f"  precision@1 of cosine (mean-pooled): {cos:.3f}"
        )
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from attn_env.checks import check_device
    from attn_env.valuations.bank import load_corpus
    from attn_env.valuations.model import load_model

    settings, opts = _split(_params(args.config))
    most = max_page_slots(settings)
    if not args.candidate and not 1 <= args.slots <= most:
        raise UserError(
            f"--slots must be between 1 and {most} (a page of the shipped "
            f"candidates fits {MAX_PAGE_TOKENS} tokens), got {args.slots}"
        )
    check_device(args.device, "--device")
    _check_out(args.out)  # before the model: a bad --out fails at once
    lm = load_model(opts.get("model_dir"), device=args.device, verbose=args.verbose)
    candidates = args.candidate
    if not candidates:
        corpus = load_corpus(opts.get("corpus"))
        candidates = _top_candidates(
            lm, args.query, corpus, settings, args.slots, args.seed
        )
    r = _relevance(lm, args.query, list(candidates), settings)
    print(f"r ({settings.spec.describe_relevance()}):")
    for j, (text, rj) in enumerate(zip(candidates, r, strict=True), start=1):
        print(f"  slot {j}  r={rj:.3f}  {text}")
    out = render_heatmap(lm, args.query, candidates, settings, Path(args.out), r)
    print(f"wrote {out}")
    return 0


def _check_out(path: str) -> None:
    """One ``UserError`` line unless a PNG can be written at ``path``.

    Its folder must exist or be creatable, and the path must be missing or a
    regular file (no folder, device, fifo or symlink): the same checks the
    atomic write makes at the end, made before the model is loaded.
    """
    from attn_env.errors import UserError
    from attn_env.fileio import check_writable_target

    check_output_file(path, "--out", make_folder=True)  # its messages name --out
    try:
        check_writable_target(path)
    except ValueError as err:
        raise UserError(f"--out: {err}") from None


MAX_PAGE_TOKENS = 512
"Position limit of the shipped MiniLM (and of BERT-like encoders)."


def max_page_slots(settings: Any) -> int:
    """The most slots of full-length candidates a page of ``settings`` holds."""
    per_slot = settings.max_candidate_tokens + 1  # the candidate and its [SEP]
    return (MAX_PAGE_TOKENS - 2 - settings.max_query_tokens) // per_slot


def _relevance(lm: Any, query: str, texts: list[str], settings: Any) -> np.ndarray:
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


def _top_candidates(
    lm: Any, query: str, corpus: Any, settings: Any, k: int, seed: int, sample: int = 96
) -> list[str]:
    """The ``k`` texts of highest r among a seeded sample of the corpus."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(
        len(corpus.cand_texts), size=min(sample, len(corpus.cand_texts)), replace=False
    )
    texts = [corpus.cand_texts[i] for i in idx]
    r = _relevance(lm, query, texts, settings)
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
