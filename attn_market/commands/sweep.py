"""``attn-market sweep SWEEP.yaml --out DIR``: a grid of experiments on Ray Tune.

The sweep file, the trial folders and the table are ``runner.sweep``'s and
``runner.sweep_table``'s; this module only parses the command line and prints.
Only argparse is imported here; Ray loads when the sweep runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["EXIT_FAILED_TRIALS", "register"]

EXIT_FAILED_TRIALS = 3
"Exit status of a sweep that finished with failed trials (their errors in the table)."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep SWEEP --out DIR [--address A] [--concurrency N] [--plot FILE
    [--metric M] [--x KEY]] [--json] [--no-progress]``."""
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of configs (mechanism x seed x ...) on Ray Tune; one table",
        description="Run every trial of SWEEP (a base config, a grid or list of "
        "overrides of its keys, a job: simulate, train+evaluate or solve) on Ray "
        "Tune, each in its folder under DIR/trials, and print one table over seeds "
        "(mean ± standard error, paired differences against the first design). "
        "Rerun the same command to resume: finished trials are not redone.",
    )
    p.add_argument("sweep", metavar="SWEEP", help="sweep YAML (see configs/sweeps/)")
    p.add_argument("--out", required=True, metavar="DIR", help="the sweep folder")
    p.add_argument(
        "--address",
        default=None,
        metavar="HOST:PORT",
        help="run on this Ray cluster (default: RAY_ADDRESS, else a local Ray)",
    )
    p.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="trials at once (default: the file's concurrency; 0: Ray's CPUs)",
    )
    p.add_argument(
        "--plot",
        default=None,
        metavar="FILE",
        help="write a PNG of --metric against a swept key (or, for a learning-"
        "curve metric, against training steps), mean ± SE over seeds",
    )
    p.add_argument(
        "--metric",
        default=None,
        metavar="M",
        help="what --plot draws (default: the table's first metric)",
    )
    p.add_argument("--x", default=None, metavar="KEY", help="--plot's x axis key")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from attn_market.commands import check_output_file
    from runner.sweep import run_sweep
    from runner.sweep_table import curve_rows, plot_curve, plot_metric

    if args.plot:
        check_output_file(args.plot, "--plot")
    table = run_sweep(
        args.sweep,
        args.out,
        address=args.address,
        concurrency=args.concurrency,
        progress=not args.no_progress and not args.json,
    )
    if args.plot:
        metric = args.metric or table["metrics"][0]
        root = Path(args.out)
        in_curves = any(r[4] == metric for r in curve_rows(root, table["trials"]))
        if in_curves:
            plot_curve(root, table, metric, args.plot)
        else:
            plot_metric(table, metric, args.x, args.plot)
    if args.json:
        print(json.dumps(table, allow_nan=False))
    else:
        _print(table, args)
    failed = [t for t in table["trials"] if t["status"] != "ok"]
    if failed:
        print(
            f"attn-market sweep: warning: {len(failed)} of {len(table['trials'])} "
            "trial(s) failed; their errors are in the table (rerun to retry them)",
            file=sys.stderr,
        )
        return EXIT_FAILED_TRIALS
    return 0


def _fmt(mean: Any, se: Any) -> str:
    if mean is None:
        return "—"
    return f"{mean:.4f}" if se is None else f"{mean:.4f} ± {se:.4f}"


def _short(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _print(table: dict[str, Any], args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    run = table.get("run", {})
    title = (
        f"sweep {table['job']}: {run.get('trials', 0)} trials "
        f"({run.get('skipped', 0)} already done, {run.get('ran', 0)} run)"
    )
    keys = [k for k in table["keys"] if k != "seed"]
    out = Table(title=title)
    out.add_column(", ".join(keys) or "design")
    out.add_column("seeds", justify="right")
    for m in table["metrics"]:
        out.add_column(f"{m}\nmean ± se\nΔ vs first ± se", justify="right")
    for d in table["designs"]:
        name = ", ".join(_short(d["overrides"].get(k)) for k in keys) or d["design"]
        seeds = f"{d['ok']}" + (f" ({d['failed']} failed)" if d["failed"] else "")
        cells = [name, seeds]
        for m in table["metrics"]:
            c = d["metrics"].get(m)
            if c is None:
                cells.append("—")
                continue
            cell = _fmt(c["mean"], c["se"])
            if c["diff"] is not None:
                how = f"{c['pairs']} paired" if c["paired"] else "unpaired"
                cell += f"\nΔ {_fmt(c['diff'], c['diff_se'])} ({how})"
            cells.append(cell)
        out.add_row(*cells)
    console = Console()
    console.print(out)
    failed = [t for t in table["trials"] if t["status"] != "ok"]
    if failed:
        errs = Table(title="failed trials")
        for col in ("trial", "design", "seed", "error"):
            errs.add_column(col, overflow="fold")
        for t in failed:
            errs.add_row(t["id"], t["design"], str(t["seed"]), t.get("error") or "")
        console.print(errs)
    if table.get("missing_metrics"):
        print(
            "metrics no trial returned: " + ", ".join(table["missing_metrics"]),
            file=sys.stderr,
        )
    print(f"table written to {args.out}/results.csv (and results.json, summary.csv)")
    if args.plot:
        print(f"plot written to {args.plot}")
