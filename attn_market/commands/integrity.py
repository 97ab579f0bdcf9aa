"""``attn-market explain CONFIG --market I`` and ``attn-market audit CONFIG``.

``explain`` prints who got which slot of market ``I`` of ``simulate``'s run
and what set each price (``runner.explain``); ``audit`` prints or writes the
integrity report of a config's market (``runner.audit``).
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from attn_env.errors import UserError
from attn_market.commands import config_from_args
from attn_market.tables import Grid, print_grid
from runner.results import jsonable

if TYPE_CHECKING:
    from rich.console import Console

    from runner.audit_report import Block, TableBlock

__all__ = ["block_grid", "print_blocks", "register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``explain`` and ``audit``."""
    p = subparsers.add_parser(
        "explain",
        help="explain one market of a simulated run: slots, prices, price setters",
        description="Replay simulate's run of CONFIG up to market I (episode-major: "
        "episode I // rounds, round I % rounds) and print each trader's score, "
        "slot, attention share, payment and the bids that set its price.",
    )
    p.add_argument("config", help="YAML experiment config (see configs/)")
    p.add_argument(
        "--market", type=int, required=True, metavar="I", help="market index"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--seed", type=int, metavar="N", help="override config seed")
    p.set_defaults(func=_explain)

    a = subparsers.add_parser(
        "audit",
        help="integrity report: fairness, exposure floor, attacks, collusion",
        description="Measure a config's market: exposure fairness by bidder and "
        "vertical, the cost of an exposure floor, an explained market, the damage "
        "of the attacks its mechanism admits and, with qlearn bidders, collusion.",
    )
    a.add_argument("config", help="YAML experiment config (see configs/)")
    a.add_argument("--json", action="store_true", help="print the report as JSON")
    a.add_argument(
        "--out", metavar="DIR", help="write audit.json, audit.md and figures there"
    )
    a.add_argument("--episodes", type=int, metavar="N", help="override episodes")
    a.add_argument(
        "--merit",
        choices=("relevance", "value"),
        default="relevance",
        help="what an ad deserves: its relevance r (default) or its value theta*r",
    )
    a.add_argument("--seed", type=int, metavar="N", help="override config seed")
    a.set_defaults(func=_audit)


def _explain(args: argparse.Namespace) -> int:
    from runner.explain import explain

    ex = explain(config_from_args(args), args.market)
    if args.json:
        print(json.dumps(jsonable(ex), allow_nan=False))
        return 0
    from rich.console import Console

    from runner.audit_report import TableBlock, explain_note, explain_rows

    price = ex["clearing_price"]
    title = (
        f"{ex['mechanism']}: market {ex['market']} (episode {ex['episode']}, round "
        f"{ex['round']}), seed {ex['seed']}, clearing price "
        + ("—" if price != price else f"{price:.4f}")
        + (" — allocated by the exposure floor's lottery" if ex["lottery"] else "")
    )
    block = TableBlock(*explain_rows(ex), wrap=frozenset({"price set by"}))
    print_grid(Console(), block_grid(block), title, note=explain_note(ex))
    return 0


def block_grid(block: TableBlock) -> Grid:
    """A report table as a grid: its first column the labels; the columns that
    may wrap (long text) justified left, the rest (numbers) right."""
    wrap = frozenset(
        j - 1 for j, h in enumerate(block.head) if j > 0 and h in block.wrap
    )
    return Grid(
        block.head[0],
        [r[0] for r in block.rows],
        block.head[1:],
        [r[1:] for r in block.rows],
        wrap=wrap,
        left=wrap,
    )


def print_blocks(console: Console, blocks: list[Block]) -> None:
    """Markdown text through rich, tables fitted to the console's width."""
    from rich.markdown import Markdown

    text: list[str] = []
    for block in [*blocks, None]:
        if isinstance(block, str):
            text.append(block)
            continue
        if text:
            console.print(Markdown("\n".join(text)))
            text = []
        if block is not None:
            print_grid(console, block_grid(block))


def _audit(args: argparse.Namespace) -> int:
    from runner.audit import audit, write_audit
    from runner.audit_report import audit_blocks

    if args.episodes is not None and args.episodes < 2:
        raise UserError(
            f"--episodes must be >= 2 (standard errors), got {args.episodes}"
        )
    if args.out:
        _check_folder(args.out)  # fail before the run, not after it
    from runner.scenarios import read_scenario

    scenario = read_scenario(args.config)
    if scenario is not None:
        return _audit_scenario(args, *scenario)
    report = audit(config_from_args(args), episodes=args.episodes, merit=args.merit)
    data = jsonable(report)
    if args.out:
        write_audit(report, args.out)
    if args.json:
        print(json.dumps(data, allow_nan=False))
    else:
        from rich.console import Console

        print_blocks(Console(), audit_blocks(data))
        if args.out:
            print(f"audit written to {args.out}")
    return 0


def _audit_scenario(args: argparse.Namespace, name: str, config: Any) -> int:
    """``audit`` on a scenario config: its own report (``--episodes`` and
    ``--merit`` are the market audit's)."""
    from runner.scenario_report import write_scenario_audit
    from runner.scenarios import audit_scenario

    if args.episodes is not None or args.merit != "relevance":
        flag = "--episodes" if args.episodes is not None else "--merit"
        raise UserError(f"{flag} does not apply to scenario {name!r}")
    report = jsonable(audit_scenario(name, config, args.seed))
    if args.out:
        write_scenario_audit(report, args.out)
    if args.json:
        print(json.dumps(report, allow_nan=False))
    else:
        from attn_market.commands.scenario_tables import print_scenario

        print_scenario(report)
        if args.out:
            print(f"audit written to {args.out}")
    return 0


def _check_folder(path: str) -> None:
    """``UserError`` unless ``path`` is a folder or can become one."""
    from pathlib import Path

    p = Path(path)
    for above in (p, *p.parents):
        if above.exists():
            if not above.is_dir():
                raise UserError(f"--out {path!r}: {str(above)!r} is not a folder")
            return
