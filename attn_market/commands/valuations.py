"""``attn-market valuations build|show|validate``: the attention bank from the shell.

- ``build CONFIG``: compute the bank that CONFIG's ``env.valuation_params`` name
  (reused as it is when it already exists) and print its folder. CONFIG may
  also be a ``search_day`` scenario config: the bank of its ``data`` folder
  (the shipped one without ``data``). ``--address HOST:PORT`` (or ``local``)
  splits the build over a Ray cluster in ``--chunks`` tasks
  (:mod:`runner.bank_ray`); ray is imported only then.
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

from attn_env.errors import UserError
from attn_market.commands import check_output_file
from runner.valuations import (
    MAX_PAGE_TOKENS,
    bank_for,
    max_page_slots,
    relevance_of,
    render_heatmap,
    settings_of,
    top_candidates,
)

__all__ = ["register"]


def register(subparsers: Any) -> None:
    """Add ``valuations build|show|validate`` to the ``attn-market`` parser."""
    parser = subparsers.add_parser(
        "valuations",
        help="build and inspect the attention bank (r and alpha from MiniLM)",
        description="Build and inspect the attention bank.",
    )
    sub = parser.add_subparsers(dest="valuations_command", required=True, metavar="CMD")

    build = sub.add_parser("build", help="compute the attention bank of a config")
    build.add_argument(
        "config",
        help="YAML config (its env.valuation_params are used) or a search_day "
        "scenario config (the bank of its data folder)",
    )
    build.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    build.add_argument("--bank-dir", default=None, help="parent folder of banks")
    build.add_argument("--batch-size", type=int, default=None)
    build.add_argument(
        "--address",
        default=None,
        help="build across the Ray cluster at HOST:PORT (local: a Ray on this "
        "machine); default: in this process",
    )
    build.add_argument(
        "--chunks",
        type=int,
        default=None,
        help="Ray tasks the query rows are split into (with --address; default: "
        "one per GPU of the cluster, else one per CPU)",
    )
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


def _bank(args: argparse.Namespace) -> tuple[Path, Any, dict[str, Any]]:
    return bank_for(
        args.config,
        device=args.device,
        bank_dir=getattr(args, "bank_dir", None),
        batch_size=getattr(args, "batch_size", None),
        progress=not getattr(args, "quiet", False),
        verbose=getattr(args, "verbose", False),
    )


def _cmd_build(args: argparse.Namespace) -> int:
    from attn_env.valuations.bank import load_bank
    from attn_env.valuations.cache import shipped_bank_dir
    from runner.bank_ray import build_config_bank

    path = build_config_bank(
        args.config,
        address=args.address,
        chunks=args.chunks,
        device=args.device,
        bank_dir=args.bank_dir,
        batch_size=args.batch_size,
        progress=not args.quiet,
        verbose=args.verbose,
    )
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
    if isinstance(m.get("ray"), dict):
        print(f"  on Ray ({m['ray'].get('address')}), {m['ray'].get('chunks')} chunks")
    if path.resolve().parent == shipped_bank_dir():
        print("  shipped prebuilt with attn-market (same model, corpus and settings)")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from attn_env.valuations.bank import load_bank, load_corpus, validate_bank
    from attn_env.valuations.model import load_model

    path, _, opts = _bank(args)
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

    settings, opts = settings_of(args.config)
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
        candidates = top_candidates(
            lm, args.query, corpus, settings, args.slots, args.seed
        )
    r = relevance_of(lm, args.query, list(candidates), settings)
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
