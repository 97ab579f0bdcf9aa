"""An audit report as Markdown tables and PNG figures (``runner.audit``'s output).

Both read the report's plain JSON data (``null`` for undefined numbers), so a
saved ``audit.json`` renders the same. Figures follow ``attn_env.figures``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.figures import new_figure, save_png

__all__ = [
    "Block",
    "TableBlock",
    "audit_blocks",
    "audit_markdown",
    "collusion_reading",
    "explain_note",
    "explain_rows",
    "plot_audit",
]

_DISPARITY = (
    ("demographic_parity", "demographic parity E(G)"),
    ("disparate_treatment", "disparate treatment E(G)/U(G)"),
    ("disparate_impact", "disparate impact C(G)/U(G)"),
)


def _f(x: Any, digits: int = 4) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _pm(d: Mapping[str, Any], key: str) -> str:
    se = d.get(f"{key}_se")
    return _f(d.get(key)) + ("" if se is None else f" ± {se:.4f}")


@dataclass(frozen=True)
class TableBlock:
    """One table of the report: ``head`` over ``rows`` of text cells; ``wrap``
    names the columns whose cells may break between words (long text)."""

    head: list[str]
    rows: list[list[str]]
    wrap: frozenset[str] = frozenset()

    def markdown(self) -> list[str]:
        """The table as Markdown lines, a blank line after it."""
        return [
            "| " + " | ".join(self.head) + " |",
            "|" + "|".join("---" for _ in self.head) + "|",
            *("| " + " | ".join(r) + " |" for r in self.rows),
            "",
        ]


Block = str | TableBlock
"A report line of Markdown text, or a table."


def _table(
    head: list[str], rows: list[list[str]], wrap: frozenset[str] = frozenset()
) -> list[Block]:
    return [TableBlock(head, rows, wrap)]


def explain_rows(ex: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of an explanation (``runner.explain.explain``'s output).

    ``attention`` is what the price is per (the attention of the slot won; in
    two-sided markets, ``units`` traded), so ``payment = price / unit x
    attention`` row by row; ``page share`` is that attention over the page's
    (:func:`explain_note` says so beside the table).
    """
    slots = any(r["attention_share"] is not None for r in ex["records"])
    head = ["agent", "bid", "rank", "slot", "attention" if slots else "units"]
    head += ["page share"] if slots else []
    head += ["price / unit", "payment", "price set by"]
    rows = []
    for r in ex["records"]:
        setters = ", ".join(
            f"{t['agent']}: {_f(t['bid'], 3)}"
            + ("" if t["weight"] == 1 else f" x {t['weight']:.3g}")
            for t in r["price_setters"]
        )
        rows.append(
            [
                r["agent"] + (f" ({r['group']})" if r.get("group") else ""),
                _f(r["bid"]),
                "—" if r["rank"] is None else str(r["rank"]),
                "—" if r["slot"] is None else str(r["slot"]),
                _f(r["attention"]),
                *([_f(r["attention_share"], 3)] if slots else []),
                _f(r["price"]),
                _f(r["payment"]),
                setters or "—",
            ]
        )
    return head, rows


def explain_note(ex: Mapping[str, Any]) -> str:
    """What the explanation's columns are: payment = price / unit x attention,
    and the page share a different quantity (attention over the page's)."""
    if not any(r["attention_share"] is not None for r in ex["records"]):
        return "payment = price / unit x units traded (for sellers: received)."
    page = ex.get("page_attention")
    total = "the page's attention" + ("" if page is None else f" ({page:.4f})")
    return (
        "payment = price / unit x attention, the attention of the slot won; "
        f"page share = attention / {total}, the sum of its top slots, not what "
        "the price is per."
    )


def audit_markdown(rep: Mapping[str, Any]) -> str:
    """The report as Markdown: one table per section."""
    lines: list[str] = []
    for block in audit_blocks(rep):
        lines += block.markdown() if isinstance(block, TableBlock) else [block]
    return "\n".join(lines)


def audit_blocks(rep: Mapping[str, Any]) -> list[Block]:
    """The report as Markdown lines and tables (a terminal lays tables out to
    fit its width; :func:`audit_markdown` writes them as Markdown)."""
    out: list[Block] = [
        f"# Audit: {rep['mechanism']}, {rep['episodes']} episodes, seed {rep['seed']}",
        "",
        "## Market",
        "",
    ]
    m = rep["market"]
    out += _table(["figure", "value"], [[k, _pm(m, k)] for k in m if "_se" not in k])
    fair = rep["fairness"]
    out += [f"## Fairness (merit: {fair['merit']})", ""]
    rows = [
        ["Gini of attention (bidders)", _f(fair["gini_attention"])],
        ["Gini of surplus (bidders)", _f(fair["gini_surplus"])],
        ["exposure-merit gap (mean TV per market)", _f(fair["exposure_merit_gap"])],
    ]
    rows += [
        [f"bidders: {label}", _f(fair["bidder_disparity"][k])]
        for k, label in _DISPARITY
    ]
    if fair.get("group_disparity"):
        rows += [
            [f"groups of ads: {label}", _f(fair["group_disparity"][k])]
            for k, label in _DISPARITY
        ]
    out += _table(["measure (ratios: 1 = parity)", "value"], rows)
    head = ["bidder", "exposure share", "merit share", "surplus share", "page share"]
    out += _table(
        head,
        [
            [
                name,
                _f(b["exposure_share"]),
                _f(b["merit_share"]),
                _f(b["surplus_share"]),
                _f(fair["floor_share"][name]),
            ]
            for name, b in fair["by_bidder"].items()
        ],
    )
    if fair.get("by_group"):
        head = ["group (ads' label)", "ads", "E(G)", "U(G)", "C(G)", "exposure share"]
        head += ["merit share", "Gini attention", "Gini surplus"]
        out += _table(
            head,
            [
                [
                    name,
                    str(g["ads"]),
                    _f(g["exposure"]),
                    _f(g["merit"]),
                    _f(g["impact"]),
                    _f(g["exposure_share"]),
                    _f(g["merit_share"]),
                    _f(g["gini_attention"]),
                    _f(g["gini_surplus"]),
                ]
                for name, g in fair["by_group"].items()
            ],
        )
    floors = rep.get("floor_costs")
    if isinstance(floors, dict):  # skipped
        out += ["## Exposure floor: its cost", "", f"Skipped: {floors['skipped']}.", ""]
    elif floors:
        out += ["## Exposure floor: its cost", ""]
        head = ["floor", "lottery share", "revenue", "change", "efficiency", "change"]
        head += ["least page share", "Gini attention"]
        grouped = floors[0].get("group_parity") is not None
        if grouped:
            head += ["groups: parity", "groups: treatment"]
        rows = []
        for r in floors:
            row = [
                _f(r["floor"]),
                _f(r["lottery_share"], 3),
                _pm(r, "revenue"),
                _pct(r["revenue_change"]),
                _pm(r, "efficiency"),
                _pct(r["efficiency_change"]),
                _f(r["min_share"]),
                _f(r["gini_attention"]),
            ]
            if grouped:
                row += [_f(r["group_parity"]), _f(r["group_treatment"])]
            rows.append(row)
        out += _table(head, rows)
    ex = rep["explain"]
    out += [
        f"## Explain: market {ex['market']} (episode {ex['episode']}, round "
        f"{ex['round']}), clearing price {_f(ex['clearing_price'])}"
        + (", allocated by the floor's lottery" if ex["lottery"] else ""),
        "",
    ]
    out += _table(*explain_rows(ex), wrap=frozenset({"price set by"}))
    out += [explain_note(ex), ""]
    attacks = rep.get("attacks")
    if attacks and isinstance(attacks.get("skipped"), str):
        out += ["## Attacks", "", f"Skipped: {attacks['skipped']}.", ""]
    elif attacks:
        out += ["## Attacks: damage against the clean market (paired, ± se)", ""]
        ran = _ran(attacks)
        if ran:
            head = ["attack", "revenue", "efficiency", "honest utility", "CRN"]
            rows = [
                [name, *(_dmg(a["damage"][k]) for k in _DAMAGE), _f(a["crn"], 2)]
                for name, a in ran.items()
            ]
            out += _table(head, rows)
        out += [
            f"- {name} skipped: {a['skipped']}"
            for name, a in attacks.items()
            if "skipped" in a
        ]
        out += [""]
    if rep.get("detection"):
        d = rep["detection"]
        out += [f"## Detection: {d['rounds']} market rounds", ""]
        out += _table(["detector", "value"], _index_rows(d))
        if d.get("mean_price") is not None:
            out += [collusion_reading(d), ""]
        per = [k for k in ("shill_score", "exposure_pvalue") if d.get(k)]
        if per:
            out += _table(
                ["bidder", *per],
                [[name] + [_f(d[k][name]) for k in per] for name in d[per[0]]],
            )
    if rep.get("collusion"):
        c = rep["collusion"]
        out += ["## Collusion: learning bidders", ""]
        out += _table(
            ["figure", "value"],
            [
                ["revenue per round", _pm(c, "revenue")],
                [
                    "95% interval",
                    f"[{_f(c['revenue_ci95'][0])}, {_f(c['revenue_ci95'][1])}]",
                ],
                ["rounds to convergence (median)", _f(c["rounds_to_convergence"], 0)],
                [
                    "seeds, warmup, feedback",
                    f"{c['seeds']}, {c['warmup']}, {c['feedback']}",
                ],
            ],
        )
    return out


_DAMAGE = ("revenue", "efficiency", "honest_utility")


def _index_rows(d: Mapping[str, Any]) -> list[list[str]]:
    """The collusion index and, where it is defined, the three means it compares
    (:func:`collusion_reading` says what the index means beside them)."""
    rows = [["collusion index (C - P) / (C - K)", _f(d["collusion_index"])]]
    if d.get("mean_price") is not None:
        rows += [
            ["P: mean clearing price", _f(d["mean_price"])],
            ["C: competitive price", _f(d["competitive_price"])],
            ["K: collusive price (reserve)", _f(d["collusive_price"])],
        ]
    return rows


def collusion_reading(d: Mapping[str, Any]) -> str:
    """The collusion index in words: its scale (0 at the competitive price C, 1
    at the collusive K, no lower bound), and where the mean price P lies.

    Args:
        d: the detection section (``collusion_index``, ``mean_price``,
            ``competitive_price``, ``collusive_price``; ``None`` undefined).
    """
    index, p = d.get("collusion_index"), d.get("mean_price")
    c, k = d.get("competitive_price"), d.get("collusive_price")
    scale = (
        "Collusion index: 0 at the competitive price C (the lower end of each "
        "round's Walrasian interval), 1 at the collusive K (the reserve), "
        "negative above C (no lower bound). "
    )
    if p is None:
        return scale + "Undefined here: nothing sold."
    if index is None:
        return scale + f"Undefined here: C = K = {c:.4f}."
    where = f"Here the mean price P = {p:.4f} "
    if index < 0:
        return scale + (
            where + f"lies above C = {c:.4f} by {p - c:.4f}, {-index:.2f} x (C - K): "
            "prices over the competitive level (overbidding, as truthful GSP "
            "bids do, or a shill), not collusion."
        )
    if index > 1:
        return scale + (
            where + f"lies under K = {k:.4f}: prices under the reserve, which an "
            "enforced reserve rules out."
        )
    return scale + (
        where + f"lies {index:.2f} of the way from C = {c:.4f} down to K = {k:.4f}."
    )


def _ran(attacks: Mapping[str, Any]) -> dict[str, Any]:
    """The attacks that were measured (a skipped one, or all, say why not)."""
    if isinstance(attacks.get("skipped"), str):
        return {}
    return {k: a for k, a in attacks.items() if "skipped" not in a}


def _dmg(d: Mapping[str, Any]) -> str:
    return _f(d["diff"]) + ("" if d["se"] is None else f" ± {d['se']:.4f}")


def _pct(x: Any) -> str:
    return "—" if x is None else f"{100 * x:+.1f}%"


def _arr(xs: list[Any]) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in xs], dtype=np.float64)


def plot_audit(rep: Mapping[str, Any], out: Path) -> list[Path]:
    """Write ``fairness.png`` and, where the sections exist, ``floor_costs.png``
    and ``attacks.png`` into ``out``; returns the paths."""
    paths = [_plot_fairness(rep["fairness"], out / "fairness.png")]
    if isinstance(rep.get("floor_costs"), list):
        paths.append(_plot_floors(rep["floor_costs"], out / "floor_costs.png"))
    ran = _ran(rep.get("attacks") or {})
    if ran:
        paths.append(_plot_attacks(ran, out / "attacks.png"))
    return paths


def _bars(ax: Any, labels: list[str], series: dict[str, np.ndarray]) -> None:
    x = np.arange(len(labels))
    width = 0.8 / len(series)
    for k, (name, y) in enumerate(series.items()):
        ax.bar(x + (k - (len(series) - 1) / 2) * width, y, width, label=name)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize="small")
    ax.legend(fontsize="small", loc="lower center", bbox_to_anchor=(0.5, 1.08), ncol=3)


def _plot_fairness(fair: Mapping[str, Any], path: Path) -> Path:
    groups = fair.get("by_group") or {}
    fig, axes = new_figure(1, 2 if groups else 1, figsize=(11 if groups else 6, 4))
    axes = np.atleast_1d(axes)
    bidders = fair["by_bidder"]
    _bars(
        axes[0],
        list(bidders),
        {
            "attention share": _arr([b["exposure_share"] for b in bidders.values()]),
            "merit share": _arr([b["merit_share"] for b in bidders.values()]),
            "surplus share": _arr([b["surplus_share"] for b in bidders.values()]),
        },
    )
    axes[0].set_title(f"by bidder (merit: {fair['merit']})")
    if groups:
        _bars(
            axes[1],
            list(groups),
            {
                "attention share": _arr([g["exposure_share"] for g in groups.values()]),
                "merit share": _arr([g["merit_share"] for g in groups.values()]),
            },
        )
        axes[1].set_title("by group of the ad (its label in the draws)")
    return save_png(fig, path)


def _plot_floors(rows: list[Mapping[str, Any]], path: Path) -> Path:
    fig, ax = new_figure(figsize=(6, 4))
    floor = _arr([r["floor"] for r in rows])
    for key, color in (("revenue", "tab:red"), ("efficiency", "tab:green")):
        y = _arr([r[key] for r in rows])
        se = _arr([r[f"{key}_se"] for r in rows])
        base = y[0] if y[0] else 1.0
        ax.errorbar(
            floor,
            y / base,
            yerr=se / base,
            marker="o",
            color=color,
            label=f"{key} (relative to floor {floor[0]:g})",
            capsize=3,
        )
    ax.set_xlabel("exposure floor (least expected share of the page)")
    ax.set_ylabel("relative to no floor")
    ax.legend(fontsize="small")
    ax.set_title("cost of an exposure floor")
    return save_png(fig, path)


def _plot_attacks(attacks: Mapping[str, Any], path: Path) -> Path:
    fig, axes = new_figure(1, len(_DAMAGE), figsize=(4 * len(_DAMAGE), 3.6))
    names = list(attacks)
    for ax, key in zip(np.atleast_1d(axes), _DAMAGE, strict=True):
        d = [attacks[n]["damage"][key] for n in names]
        y = _arr([x["diff"] for x in d])
        lo, hi = _arr([x["ci_low"] for x in d]), _arr([x["ci_high"] for x in d])
        ax.bar(names, y, color="tab:purple")
        ax.errorbar(
            names, y, yerr=[y - lo, hi - y], fmt="none", color="black", capsize=3
        )
        ax.axhline(0.0, color="grey", lw=0.8)
        ax.set_title(f"{key}: attacked - clean (95% CI)", fontsize="small")
    return save_png(fig, path)
