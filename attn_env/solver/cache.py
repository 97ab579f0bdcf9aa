"""Solutions kept on disk, keyed by the market and the solver's options.

``$ATTN_MARKET_CACHE/solver`` (else ``~/.cache/attn-market/solver``) holds one
JSON file per solved market, named by a hash of the market's options, the
solver's options and the seed, so ``simulate`` with ``kind: equilibrium``
solves a market once. Files are written atomically and only ever parsed as
JSON; an unreadable one is solved again and replaced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

from attn_env import mechanisms
from attn_env.config import EnvConfig, SolveConfig
from attn_env.solver.solution import FORMAT, Solution, load_solution

__all__ = ["cache_dir", "solve_cached"]


def cache_dir() -> Path:
    """``$ATTN_MARKET_CACHE/solver``, else ``~/.cache/attn-market/solver``."""
    root = os.environ.get("ATTN_MARKET_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "attn-market"
    return base / "solver"


def _key(env: EnvConfig, s: SolveConfig, seed: int) -> str | None:
    """Hash of everything that changes the answer; ``None`` if not plain data."""
    if isinstance(env.mechanism, mechanisms.Mechanism):
        return None  # an instance's parameters are not plain data
    data = {
        "format": FORMAT,
        "env": dataclasses.asdict(env),
        "solve": {**dataclasses.asdict(s), "cache": None},
        "seed": seed,
    }
    try:
        text = json.dumps(data, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def solve_cached(
    env: EnvConfig, s: SolveConfig | None = None, seed: int = 0
) -> Solution:
    """:func:`attn_env.solver.solve`, read from the cache when solved before."""
    from attn_env.solver import solve

    s = s or SolveConfig()
    key = _key(env, s, seed) if s.cache else None
    path = cache_dir() / f"{key}.json" if key else None
    if path is not None and path.is_file():
        try:
            return load_solution(path)
        except (OSError, ValueError):
            pass  # unreadable: solve again and replace it
    solution = solve(env, s, seed)
    if path is not None:
        try:
            solution.save(path)
        except OSError:
            pass  # a read-only cache only costs speed
    return solution
