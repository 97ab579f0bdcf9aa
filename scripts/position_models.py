"""The transformer's attention by slot position beside textbook position curves.

Run ``python scripts/position_models.py`` from the repository: it opens the
attention bank of ``configs/valuations.yaml`` (building it when it is missing,
about 2 minutes on 2 CPU cores), recomputes every stored page's alpha **in page
order** (the bank stores alpha sorted descending, the order mechanisms fill
slots; sorting them again must give the bank's numbers, which is checked), and
plots the mean share of the page's attention that slot j = 1..K draws, for
K = 3 and K = 5, beside

- ``dcg``: 1 / log2(j + 1);
- ``geometric``: gamma^(j-1), gamma fitted by least squares to the transformer;
- ``cascade`` (continue = 1): c (1 - c)^(j-1), click c fitted to the click curve;
- a published click-by-position curve: Chitika's share of Google-referred
  traffic by organic position (May 2010, 8,253,240 ad impressions: 34.35 %,
  16.96 %, 11.42 %, 7.73 %, 6.19 % for positions 1-5), from the literature, not
  measured here.

Every curve is normalised to sum to 1 over the K slots (alpha's scale). The
figure goes to ``docs/position_models.png`` (``--out``); the numbers are
printed as a markdown table (``--json``: one JSON object; ``--from-json FILE``
redraws the figure and table from such an object without the model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.config import load_config
from attn_env.figures import new_figure, save_png
from attn_env.valuations.attention import SOURCE_OPTIONS
from attn_env.valuations.bank import (
    Bank,
    BankSettings,
    build_bank,
    load_bank,
    load_corpus,
)
from attn_env.valuations.positions import PositionModel

ROOT = Path(__file__).resolve().parents[1]
CHITIKA_2010 = (34.35, 16.96, 11.42, 7.73, 6.19)
"Chitika Insights (May 2010): % of Google-referred traffic from organic positions 1-5."
CHITIKA_URL = "http://chitika.com/research/2010/the-value-of-google-result-positioning/"


def shares(weights: NDArray[np.float64]) -> NDArray[np.float64]:
    """Weights normalised to sum to 1 (alpha's scale)."""
    w = np.asarray(weights, dtype=np.float64)
    return w / w.sum()


def fit_ratio(target: NDArray[np.float64]) -> float:
    """The ratio r in (0, 1] whose normalised curve r^(j-1) is nearest ``target``."""
    grid = np.linspace(1e-3, 1.0, 9991)
    curves = grid[:, None] ** np.arange(target.size)[None, :]
    curves /= curves.sum(axis=1, keepdims=True)
    return float(grid[np.argmin(((curves - target) ** 2).sum(axis=1))])


def page_order_alpha(bank: Bank, corpus: Any, settings: BankSettings, k: int, lm: Any):
    """``[Q, P, k]`` alpha of every stored k-slot page, in page order.

    The pages are the bank's own (``page_candidates``): query q's layout p holds
    its first k candidates in slots 1..k.
    """
    from attn_env.valuations.model import (
        assemble_pages,
        page_attention,
        segment_mass,
        tokenize,
    )

    q_idx = np.asarray(bank.queries)
    fill = np.asarray(bank.page_candidates)[:, :, :k]
    n_q, n_p = fill.shape[:2]
    q_tok = tokenize(
        lm.tokenizer, [corpus.query_texts[q] for q in q_idx], settings.max_query_tokens
    )
    needed = np.unique(fill)
    c_tok = dict(
        zip(
            needed.tolist(),
            tokenize(
                lm.tokenizer,
                [corpus.cand_texts[c] for c in needed],
                settings.max_candidate_tokens,
            ),
            strict=True,
        )
    )
    jobs = [(i, p) for i in range(n_q) for p in range(n_p)]
    out = np.zeros((n_q, n_p, k))
    for start in range(0, len(jobs), 64):
        chunk = jobs[start : start + 64]
        page = assemble_pages(
            lm.tokenizer,
            [q_tok[i] for i, _ in chunk],
            [[c_tok[int(c)] for c in fill[i, p]] for i, p in chunk],
        )
        attn = page_attention(lm, page, settings.spec)
        mass = segment_mass(attn, page.segment, k + 1, settings.spec)[:, 1:]
        rows, cols = np.asarray(chunk).T
        out[rows, cols] = mass / mass.sum(axis=1, keepdims=True)
    return out


def measure(config: Path, slots: tuple[int, ...], device: str) -> dict[str, Any]:
    """Transformer alpha by position (page order and sorted) and the curves."""
    from attn_env.valuations.model import load_model

    params = dict(load_config(config).env.valuation_params)
    options = {k: params.pop(k) for k in list(params) if k in SOURCE_OPTIONS}
    settings = BankSettings.from_params(params, SOURCE_OPTIONS)
    corpus = load_corpus(options.get("corpus"))
    lm = load_model(options.get("model_dir"), device=device)
    path = build_bank(settings, corpus, lm=lm, bank_dir=options.get("bank_dir"))
    bank = load_bank(path)
    result: dict[str, Any] = {
        "bank": str(path),
        "queries": bank.n_queries,
        "layouts": bank.pages,
        "literature": {"chitika_2010_percent": list(CHITIKA_2010), "url": CHITIKA_URL},
        "by_k": {},
    }
    for k in slots:
        ordered = page_order_alpha(bank, corpus, settings, k, lm)
        stored = np.asarray(bank.alpha[:, :, k - 1, :k], dtype=np.float64)
        gap = float(np.abs(-np.sort(-ordered, axis=2) - stored).max())
        if gap > 1e-3:
            raise RuntimeError(f"recomputed alpha differs from the bank's by {gap}")
        per_query = ordered.mean(axis=1)  # layouts of one query are not independent
        mean = per_query.mean(axis=0)
        gamma = fit_ratio(mean)
        chitika = shares(np.array(CHITIKA_2010[:k]))
        click = 1.0 - fit_ratio(chitika)
        models = {
            "dcg": PositionModel.parse("dcg"),
            f"geometric(gamma={gamma:.3f})": PositionModel.parse(
                {"curve": "geometric", "gamma": gamma}
            ),
            f"cascade(click={click:.3f}, continue=1)": PositionModel.parse(
                {"curve": "cascade", "click": click, "continue": 1.0}
            ),
        }
        result["by_k"][k] = {
            "transformer_page_order": mean.tolist(),
            "transformer_page_order_se": (
                per_query.std(axis=0, ddof=1) / np.sqrt(len(per_query))
            ).tolist(),
            "transformer_sorted": stored.mean(axis=(0, 1)).tolist(),
            "max_gap_to_bank": gap,
            **{name: shares(m.weights(k)).tolist() for name, m in models.items()},
            "chitika_2010": chitika.tolist(),
        }
    return result


def plot(result: dict[str, Any], out: Path) -> Path:
    """One panel per K: each curve's share of the page by slot position."""
    by_k = result["by_k"]
    fig, axes = new_figure(1, len(by_k), figsize=(5.2 * len(by_k), 4.2), squeeze=False)
    for ax, (k, row) in zip(axes[0], by_k.items(), strict=True):
        j = np.arange(1, int(k) + 1)
        ax.errorbar(
            j,
            row["transformer_page_order"],
            yerr=2 * np.asarray(row["transformer_page_order_se"]),
            marker="o",
            linewidth=2.2,
            capsize=3,
            label="MiniLM alpha, page order (±2 se)",
        )
        ax.plot(
            j, row["transformer_sorted"], "o--", label="MiniLM alpha, sorted (bank)"
        )
        for name, style, note in (
            ("dcg", "s-", ""),
            ("geometric", "^-", ", fit to MiniLM"),
            ("cascade", "v-", ", fit to Chitika"),
        ):
            key = next(x for x in row if x.startswith(name))
            ax.plot(j, row[key], style, linewidth=1.2, label=key + note)
        ax.plot(j, row["chitika_2010"], "kD:", label="Chitika 2010 clicks (literature)")
        ax.set_xticks(j)
        ax.set_xlabel("slot position j (top of the page = 1)")
        ax.set_ylabel("share of the page's attention / clicks")
        ax.set_title(
            f"K = {k} slots ({result['queries']} queries x {result['layouts']} layouts)"
        )
        ax.set_ylim(0, None)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper right")
    return save_png(fig, out, dpi=130)


def table(result: dict[str, Any]) -> str:
    """The numbers of the figure as a markdown table (one block per K).

    The last column is the L1 distance of each curve to MiniLM's page-order alpha.
    """
    lines = []
    for k, row in result["by_k"].items():
        head = " | ".join(f"j={j}" for j in range(1, int(k) + 1))
        lines += [
            f"K = {k}",
            "",
            f"| curve | {head} | L1 to MiniLM |",
            "|---" * (int(k) + 2) + "|",
        ]
        ref = np.asarray(row["transformer_page_order"])
        for name, values in row.items():
            if name.endswith("_se") or name == "max_gap_to_bank":
                continue
            cells = " | ".join(f"{v:.3f}" for v in values)
            l1 = np.abs(np.asarray(values) - ref).sum()
            lines.append(f"| {name} | {cells} | {l1:.3f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Measure, plot and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "valuations.yaml"))
    parser.add_argument("--out", default=str(ROOT / "docs" / "position_models.png"))
    parser.add_argument("--slots", type=int, nargs="+", default=[3, 5])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--from-json", default=None, help="redraw from a saved --json output"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
    else:
        result = measure(Path(args.config), tuple(args.slots), args.device)
    out = plot(result, Path(args.out))
    print(json.dumps(result) if args.json else f"wrote {out}\n\n{table(result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
