"""The table of a sweep (``runner.sweep``): trials, designs over seeds, curves, plots.

Written into the sweep folder ``OUT``, each file atomically:

``results.csv``
    one row per trial: ``trial, design, seed, status, error``, the swept keys,
    then every number the trial's job returned (``mean_utility.buyer_0``, ...),
    exactly as the job returned it (``repr`` of the float; empty where
    undefined). A failed trial's ``error`` is one line.
``results.json``
    the same trials, and per design (the overrides but ``seed``) each metric's
    mean over seeds with its standard error, and the paired difference
    against the first design (``runner.sweep_table.aggregate``).
``summary.csv``
    the designs' aggregates in long form: ``design, metric, n, mean, se, diff,
    diff_se, paired, pairs``.
``curves.csv``
    the learning curves of ``train+evaluate`` trials in long form: ``trial,
    design, seed, step, metric, value`` (every scalar the trainer logged to its
    run folder's TensorBoard files, by learner: ``buyer/rollout/ep_rew_mean``).

Seeds are the replications: a design's standard error is ``std(x_s, ddof=1) /
sqrt(S)`` over its seeds ``s`` (``attn_env.estimates.Estimate.mean``); a design
that shares seeds with the first one is compared on those seeds, pair by pair
(common random numbers: the same seed draws the same values), else unpaired
(Welch), with ``attn_env.estimates.difference``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.errors import UserError
from attn_env.estimates import Estimate, difference
from attn_env.fileio import atomic_write_text

__all__ = [
    "CURVE_COLUMNS",
    "aggregate",
    "build_table",
    "curve_rows",
    "plot_curve",
    "plot_metric",
    "read_tb_curve",
    "write_curve",
    "write_tables",
]

CURVE_COLUMNS = ("trial", "design", "seed", "step", "metric", "value")
"Columns of ``OUT/curves.csv`` (one row per trial, step and metric)."


def _number(x: Any) -> float:
    return math.nan if x is None else float(x)


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def aggregate(
    records: Sequence[Mapping[str, Any]], metrics: Iterable[str]
) -> list[dict[str, Any]]:
    """Each design's metrics over its seeds, and its difference to the first design.

    Args:
        records: trial records (``design``, ``seed``, ``status``, ``metrics``).
        metrics: the metrics to aggregate.

    Returns:
        One entry per design, in the order designs first appear: ``design``,
        ``seeds`` (of its finished trials), ``ok``, ``failed`` and ``metrics``:
        ``{name: {n, mean, se, diff, diff_se, paired, pairs}}`` (``None`` where
        undefined; ``diff`` is this design minus the first, on the seeds both
        finished where they share any, ``pairs`` of them).
    """
    designs: dict[str, list[Mapping[str, Any]]] = {}
    for r in records:
        designs.setdefault(r["design"], []).append(r)
    metrics = list(metrics)
    by_seed: dict[str, dict[str, dict[Any, float]]] = {}
    out = []
    for design, rs in designs.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        by_seed[design] = {
            m: {r["seed"]: _number(r["metrics"].get(m)) for r in ok} for m in metrics
        }
        out.append(
            {
                "design": design,
                "overrides": {
                    k: v for k, v in rs[0]["overrides"].items() if k != "seed"
                },
                "seeds": [r["seed"] for r in ok],
                "ok": len(ok),
                "failed": len(rs) - len(ok),
                "metrics": {},
            }
        )
    first = next(iter(designs), None)
    for entry in out:
        for m in metrics:
            mine = by_seed[entry["design"]][m]
            x = np.array([v for v in mine.values() if math.isfinite(v)])
            est = Estimate.mean(x)
            cell: dict[str, Any] = {
                "n": int(x.size),
                "mean": _finite(est.value) if x.size else None,
                "se": _finite(est.se) if x.size else None,
                "diff": None,
                "diff_se": None,
                "paired": None,
                "pairs": 0,
            }
            if entry["design"] != first and x.size:
                cell.update(_diff(mine, by_seed[first][m]))
            entry["metrics"][m] = cell
    return out


def _diff(mine: Mapping[Any, float], ref: Mapping[Any, float]) -> dict[str, Any]:
    """``mine - ref``: paired on shared seeds (both finite) if any, else Welch."""
    shared = [s for s in mine if s in ref and math.isfinite(mine[s] + ref[s])]
    if shared:
        a = Estimate.mean([mine[s] for s in shared])
        b = Estimate.mean([ref[s] for s in shared])
        d = difference(a, b, paired=True)
    else:
        xa = [v for v in mine.values() if math.isfinite(v)]
        xb = [v for v in ref.values() if math.isfinite(v)]
        if not xa or not xb:
            return {}
        d = difference(Estimate.mean(xa), Estimate.mean(xb), paired=False)
    return {
        "diff": _finite(d.diff),
        "diff_se": _finite(d.se),
        "paired": bool(shared),
        "pairs": len(shared),
    }


def build_table(
    spec: Any, trials: Sequence[Any], records: Sequence[Mapping[str, Any]], root: Path
) -> dict[str, Any]:
    """The sweep's table: its trials' records and every metric aggregated by design."""
    names: dict[str, None] = {}
    for r in records:
        if r.get("status") == "ok":
            names.update(dict.fromkeys(r["metrics"]))
    keys: dict[str, None] = {}
    for t in trials:
        keys.update(dict.fromkeys(t.overrides))
    missing = [m for m in spec.metrics if m not in names]
    return {
        "job": spec.job,
        "sweep": str(spec.path),
        "metrics": list(spec.metrics),
        "missing_metrics": missing if names else [],
        "keys": list(keys),
        "trials": [dict(r) for r in records],
        "designs": aggregate(records, names),
    }


def _cell(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return repr(x)
    if isinstance(x, str):
        return x
    return json.dumps(x, separators=(",", ":"), sort_keys=True)


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for row in rows:
        w.writerow([_cell(x) for x in row])
    return buf.getvalue()


def write_tables(root: Path, table: Mapping[str, Any]) -> None:
    """Write the table's files (``results.csv``, ``.json``, ``summary.csv``,
    ``curves.csv``) into ``root``."""
    trials = table["trials"]
    names: dict[str, None] = {}
    for r in trials:
        names.update(dict.fromkeys(r.get("metrics") or {}))
    keys = table["keys"]
    first = ["trial", "design", "seed", "status", "error", *keys]
    for column in first:  # a result's own ``seed`` is the trial's: shown once
        names.pop(column, None)
    header = [*first, *names]
    rows = (
        [
            r["id"],
            r["design"],
            r["seed"],
            r["status"],
            r.get("error"),
            *(r["overrides"].get(k) for k in keys),
            *((r.get("metrics") or {}).get(m) for m in names),
        ]
        for r in trials
    )
    atomic_write_text(root / "results.csv", _csv(header, rows))
    summary = (
        [
            d["design"],
            m,
            c["n"],
            c["mean"],
            c["se"],
            c["diff"],
            c["diff_se"],
            c["paired"],
            c["pairs"],
        ]
        for d in table["designs"]
        for m, c in d["metrics"].items()
    )
    atomic_write_text(
        root / "summary.csv",
        _csv(
            [
                "design",
                "metric",
                "n",
                "mean",
                "se",
                "diff",
                "diff_se",
                "paired",
                "pairs",
            ],
            summary,
        ),
    )
    atomic_write_text(
        root / "curves.csv", _csv(CURVE_COLUMNS, curve_rows(root, trials))
    )
    atomic_write_text(root / "results.json", json.dumps(table, allow_nan=False))


# -- learning curves ----------------------------------------------------------------


def read_tb_curve(tb: Path) -> list[tuple[int, str, float]]:
    """Every scalar in the TensorBoard files under ``tb``: ``(step, metric, value)``.

    The trainers already log there (``RunFolder.tb_folder``: one folder per
    learner); a metric is named ``<learner folder>/<tag>``. Nothing is
    written. No folder, or no TensorBoard installed: no rows.
    """
    if not tb.is_dir():
        return []
    try:
        from tensorboard.backend.event_processing.event_file_loader import (
            EventFileLoader,
        )
    except ImportError:
        return []
    rows = []
    for path in sorted(tb.rglob("events.out.tfevents.*")):
        if not path.is_file() or path.is_symlink():
            continue
        learner = path.parent.relative_to(tb).as_posix()
        for event in EventFileLoader(str(path)).Load():
            for v in event.summary.value:
                kind = v.WhichOneof("value")
                if kind == "simple_value":
                    x = float(v.simple_value)
                elif kind == "tensor" and len(v.tensor.float_val) == 1:
                    x = float(v.tensor.float_val[0])
                else:
                    continue
                rows.append((int(event.step), f"{learner}/{v.tag}", x))
    rows.sort(key=lambda r: (r[1], r[0]))
    return rows


def write_curve(path: Path, rows: Sequence[tuple[int, str, float]]) -> None:
    """A trial's curve as ``step, metric, value`` CSV (atomic)."""
    atomic_write_text(path, _csv(("step", "metric", "value"), rows))


def curve_rows(root: Path, trials: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """``curves.csv``'s rows: each finished trial's ``curve.csv``, tagged."""
    out = []
    for r in trials:
        if r.get("status") != "ok":
            continue
        path = root / "trials" / r["id"] / "curve.csv"
        if not path.is_file() or path.is_symlink():
            continue
        with open(path, newline="") as fh:
            reader = csv.reader(fh)
            next(reader, None)
            for step, metric, value in reader:
                out.append(
                    [r["id"], r["design"], r["seed"], int(step), metric, float(value)]
                )
    return out


# -- plots --------------------------------------------------------------------------


def _band(ax: Any, x: Any, mean: Any, se: Any, label: str, bars: bool = False) -> None:
    """A line with a ± SE band; with ``bars``, points with error bars (categories)."""
    x, mean, se = (np.asarray(a, dtype=float) for a in (x, mean, se))
    if bars:
        ax.errorbar(
            x,
            mean,
            yerr=np.where(np.isfinite(se), se, 0),
            fmt="o",
            capsize=4,
            label=label,
        )
        return
    line = ax.plot(x, mean, marker="o", ms=3, label=label)[0]
    ok = np.isfinite(se)
    if ok.any():
        ax.fill_between(
            x,
            mean - np.where(ok, se, 0),
            mean + np.where(ok, se, 0),
            color=line.get_color(),
            alpha=0.2,
        )


def plot_metric(
    table: Mapping[str, Any], metric: str, x_key: str | None, path: str | Path
) -> Path:
    """``metric`` against swept key ``x_key`` (mean ± SE band over seeds).

    One line per combination of the other swept keys (``seed`` aside);
    ``x_key`` defaults to the first swept key that is not ``seed``.
    """
    from attn_env.figures import new_figure, save_png

    keys = [k for k in table["keys"] if k != "seed"]
    if not keys:
        raise UserError("--plot needs a swept key besides seed to put on the x axis")
    x_key = x_key or keys[0]
    if x_key not in keys:
        raise UserError(f"--x {x_key!r} is not a swept key; swept: {', '.join(keys)}")
    ok = [r for r in table["trials"] if r["status"] == "ok"]
    if not any(metric in r["metrics"] for r in ok):
        known = sorted({m for r in ok for m in r["metrics"]})
        raise UserError(
            f"--metric {metric!r} is not a result of this sweep; known: "
            f"{', '.join(known[:30])}{', ...' if len(known) > 30 else ''}"
        )
    xs = list(dict.fromkeys(_freeze(r["overrides"].get(x_key)) for r in ok))
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs)
    if numeric:
        xs.sort()
    others = [k for k in keys if k != x_key]
    lines: dict[str, dict[Any, list[float]]] = {}
    for r in ok:
        label = ", ".join(f"{k}={_freeze(r['overrides'].get(k))}" for k in others)
        x = _freeze(r["overrides"].get(x_key))
        value = _number(r["metrics"].get(metric))
        if math.isfinite(value):
            lines.setdefault(label, {}).setdefault(x, []).append(value)
    fig, ax = new_figure(figsize=(6.4, 4.2))
    for label, points in lines.items():
        at = [x for x in xs if x in points]
        est = [Estimate.mean(points[x]) for x in at]
        pos = at if numeric else [xs.index(x) for x in at]
        _band(
            ax,
            pos,
            [e.value for e in est],
            [e.se for e in est],
            label or metric,
            bars=not numeric,
        )
    if not numeric:
        ax.set_xticks(range(len(xs)), [str(x) for x in xs], rotation=30, ha="right")
    ax.set_xlabel(x_key)
    ax.set_ylabel(f"{metric} (mean ± SE over seeds)")
    if any(lines):
        ax.legend(fontsize=8)
    return save_png(fig, path)


def _freeze(x: Any) -> Any:
    return json.dumps(x, sort_keys=True) if isinstance(x, dict | list) else x


def plot_curve(
    root: Path, table: Mapping[str, Any], metric: str, path: str | Path
) -> Path:
    """Learning curve ``metric`` by step, one mean ± SE band per design (over seeds)."""
    from attn_env.figures import new_figure, save_png

    rows = curve_rows(root, table["trials"])
    mine = [r for r in rows if r[4] == metric]
    if not mine:
        known = sorted({r[4] for r in rows})
        raise UserError(
            f"--metric {metric!r} is in no learning curve of this sweep; known: "
            f"{', '.join(known[:30]) or '(none: no train+evaluate trial finished)'}"
        )
    by: dict[str, dict[int, list[float]]] = {}
    for _, design, _, step, _, value in mine:
        by.setdefault(design, {}).setdefault(step, []).append(value)
    fig, ax = new_figure(figsize=(6.4, 4.2))
    for design, steps in by.items():
        at = sorted(steps)
        est = [Estimate.mean(steps[s]) for s in at]
        _band(ax, at, [e.value for e in est], [e.se for e in est], design)
    ax.set_xlabel("agent-steps of the learner")
    ax.set_ylabel(f"{metric} (mean ± SE over seeds)")
    ax.legend(fontsize=8)
    return save_png(fig, path)
