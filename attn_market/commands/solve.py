"""``attn-market solve CONFIG``: the numerical Bayes–Nash equilibrium of a market.

Prints each role's utility loss and the solver's cost as a table, or one JSON
object (``--json``): ``{"roles": {ROLE: {"values", "bids", "utility_loss"}},
"iterations", "seconds", "converged"}``; ``--out DIR`` saves the solution
(``DIR/equilibrium.json``, which ``kind: equilibrium`` reads with ``path``),
``--plot FILE`` draws the bid functions.

A solution whose utility loss is over ``solve.tolerance`` is never passed off
as an equilibrium: one warning line on stderr names the loss, ``converged`` is
``false`` and the exit status is :data:`EXIT_UNCONVERGED` (3).
"""

from __future__ import annotations

import argparse
import json
import sys

from attn_market.commands import check_output_file, config_from_args

__all__ = ["EXIT_UNCONVERGED", "register"]

EXIT_UNCONVERGED = 3
"Exit status of a solve whose utility loss is over ``solve.tolerance``."


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``solve CONFIG [--json] [--plot FILE] [--out DIR] [--seed N]``."""
    p = subparsers.add_parser(
        "solve",
        help="compute the market's Bayes-Nash equilibrium numerically (SODA)",
        description="Solve the config's sealed-bid market for its symmetric "
        "Bayes-Nash equilibrium (discretised values and bids, dual averaging; "
        "grid sizes in the config's solve: section) and report each role's bid "
        "function and utility loss.",
    )
    p.add_argument("config", metavar="CONFIG", help="experiment YAML (see configs/)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", metavar="FILE", help="write a PNG of the bid functions")
    p.add_argument(
        "--out", metavar="DIR", help="save the solution as DIR/equilibrium.json"
    )
    p.add_argument("--seed", type=int, metavar="N", help="override the config's seed")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from runner.solve import SOLUTION_FILE, solve

    config = config_from_args(args)
    if args.plot:
        check_output_file(args.plot, "--plot")
    if args.out:
        check_output_file(f"{args.out}/{SOLUTION_FILE}", "--out", make_folder=True)
    solution = solve(config, out=args.out, plot=args.plot)
    if args.json:
        print(json.dumps(solution.summary(), allow_nan=False))
    else:
        _print_table(solution, args)
    if solution.converged:
        return 0
    worst = max(solution.roles, key=lambda r: solution.roles[r].utility_loss)
    print(
        f"attn-market solve: warning: not converged: utility loss "
        f"{solution.utility_loss:.4f} ({worst}) is over solve.tolerance "
        f"{config.solve.tolerance:g}; the bids are not an equilibrium (refine the "
        "grid or add iterations)",
        file=sys.stderr,
    )
    return EXIT_UNCONVERGED


def _print_table(solution, args: argparse.Namespace) -> None:
    from rich.console import Console
    from rich.table import Table

    m = solution.market
    table = Table(
        title=f"{m['mechanism']}: {solution.iterations} iterations, "
        f"{solution.seconds:.1f} s, grid {m['grid']['values']} values x "
        f"{m['grid']['bids']} bids" + ("" if solution.converged else " (NOT converged)")
    )
    for col in ("role", "utility loss", "bid at lowest value", "bid at highest value"):
        table.add_column(col, justify="left" if col == "role" else "right")
    for name, r in solution.roles.items():
        table.add_row(
            name, f"{r.utility_loss:.4f}", f"{r.bids[0]:.4f}", f"{r.bids[-1]:.4f}"
        )
    console = Console()
    console.print(table)
    if args.out:
        console.print(f"solution written to {args.out}")
    if args.plot:
        console.print(f"plot written to {args.plot}")
