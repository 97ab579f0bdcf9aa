"""Solutions kept on disk, keyed by the market and the solver's options.

``$ATTN_MARKET_CACHE/solver`` (else ``~/.cache/attn-market/solver``) holds one
JSON file per solved market, named by a hash of the market's options, the
solver's options and the seed, so ``simulate`` with ``kind: equilibrium``
solves a market once. Files are written atomically and only ever parsed as
JSON, with limits (``attn_env.fileio.read_user_json``) and every field
checked; an entry that cannot be read, fails a check or was solved for
another market (a file copied under the wrong name) is solved again and
replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from attn_env import mechanisms
from attn_env.config import EnvConfig, SolveConfig, SolvePrior, SolveUtility
from attn_env.core import MarketSpec
from attn_env.errors import UserError
from attn_env.solver.driver import solve
from attn_env.solver.game import with_grid_defaults
from attn_env.solver.soda import format_of
from attn_env.solver.solution import FORMAT, Solution, load_solution

__all__ = ["cache_dir", "market_of", "solve_cached"]

NOT_IN_KEY = ("cache", "tolerance", "allow_unconverged")
"Solver options that do not change the solution (only how it is judged or kept)."


def cache_dir() -> Path:
    """``$ATTN_MARKET_CACHE/solver``, else ``~/.cache/attn-market/solver``."""
    root = os.environ.get("ATTN_MARKET_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "attn-market"
    return base / "solver"


def _key(env: EnvConfig, s: SolveConfig, seed: int) -> str | None:
    """Hash of everything that changes the answer; ``None`` if not plain data."""
    if isinstance(env.mechanism, mechanisms.Mechanism):
        return None  # an instance's parameters are not plain data
    # the grid the solve runs on (``values: None`` is the market's default)
    solve_opts = dataclasses.asdict(with_grid_defaults(env, s))
    for name in NOT_IN_KEY:
        solve_opts.pop(name)
    # the formats options are in the key only when set, so that every solve
    # from before them keeps its key (and its cache entry)
    for name, default in (
        ("utility", dataclasses.asdict(SolveUtility())),
        ("classes", []),
        ("prior", dataclasses.asdict(SolvePrior())),
        ("roi_target", None),
        # the floor before its default became 1e-9: a solve with 1e-4 keeps
        # its old key and entry, every solve at the new default gets a new one
        ("scale_floor", 1e-4),
    ):
        if solve_opts.get(name) == default:
            solve_opts.pop(name)
    env_opts = dataclasses.asdict(env)
    # likewise the env options added with them (the rewards' utility, per-buyer
    # value ranges), at their defaults
    for name, default in (
        ("utility", dataclasses.asdict(SolveUtility())),
        ("value_ranges", {}),
    ):
        if name in env_opts and env_opts[name] == default:
            env_opts.pop(name)
    data = {
        "format": FORMAT,
        "env": env_opts,
        "solve": solve_opts,
        "seed": seed,
    }
    try:
        text = json.dumps(data, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def market_of(env: EnvConfig, s: SolveConfig) -> dict[str, Any]:
    """The fields of ``Solution.market`` that ``env`` and ``s`` fix without solving."""
    spec = MarketSpec.from_config(env)
    s = with_grid_defaults(env, s)
    fmt = format_of(s)
    return {
        "utility": fmt.get("utility"),
        "classes": fmt.get("classes"),
        "prior": fmt.get("prior"),
        "roi_target": fmt.get("roi_target"),
        "mechanism": mechanisms.name_of(env.mechanism),
        "mechanism_params": dict(env.mechanism_params),
        "n_buyers": env.n_buyers,
        "n_sellers": spec.n_sellers,
        "valuation": env.valuation,
        "value_dist": env.value_dist,
        "grid": {
            "values": s.values,
            "bids": s.bids,
            "refine": s.refine,
            "samples": s.samples,
        },
    }


def _read(path: Path, env: EnvConfig, s: SolveConfig) -> Solution | None:
    """The cached solution at ``path``, or ``None`` if unreadable or for another
    market."""
    try:
        solution = load_solution(path, what="solver cache entry")
    except (OSError, UserError):
        return None
    want = market_of(env, s)
    if any(solution.market.get(k) != v for k, v in want.items()):
        return None
    return solution


def solve_cached(
    env: EnvConfig, s: SolveConfig | None = None, seed: int = 0
) -> Solution:
    """:func:`attn_env.solver.solve`, read from the cache when solved before.

    ``converged`` is judged against ``s.tolerance`` (not the tolerance the
    cached solve ran with).
    """
    s = s or SolveConfig()
    key = _key(env, s, seed) if s.cache else None
    path = cache_dir() / f"{key}.json" if key else None
    solution = _read(path, env, s) if path is not None and path.exists() else None
    if solution is None:
        solution = solve(env, s, seed)
        if path is not None:
            try:
                solution.save(path)
            except (OSError, ValueError):
                pass  # a read-only cache (or a non-file in the way) only costs speed
    return dataclasses.replace(solution, converged=solution.utility_loss <= s.tolerance)
