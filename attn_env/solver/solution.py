"""A solved equilibrium: bid functions per role, their utility loss, diagnostics.

Saved as plain JSON (never pickle), so a solution reloads anywhere and a user's
file is only ever parsed, not executed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.fileio import atomic_write_text

__all__ = ["FORMAT", "RoleSolution", "Solution", "load_solution"]

FORMAT = "attn-market-equilibrium/1"
"The ``format`` tag of a saved solution."


@dataclass(frozen=True)
class RoleSolution:
    """One role's equilibrium on the solve grid."""

    values: list[float]
    "Value (or cost) grid: quantile midpoints of the role's distribution."
    bids: list[float]
    "Mean bid (or ask) of the distributional strategy at each value."
    utility_loss: float
    "Relative ex-ante utility loss against a best response on the finer grid."
    spread: float
    "Mean standard deviation of the bid at a value (0 for a pure strategy)."
    bid_grid: list[float] = field(default_factory=list)
    "The bid grid of the solve."
    strategy: list[list[float]] = field(default_factory=list)
    "``[V][G]`` probability of each grid bid at each value (rows sum to 1)."

    def bid_function(self):
        """``values -> bids`` by linear interpolation (flat beyond the grid)."""
        xs, ys = np.asarray(self.values), np.asarray(self.bids)

        def fn(v: NDArray) -> NDArray[np.float64]:
            return np.interp(np.asarray(v, dtype=np.float64), xs, ys)

        return fn


@dataclass(frozen=True)
class Solution:
    """What :func:`attn_env.solver.solve` returns."""

    roles: dict[str, RoleSolution]
    iterations: int
    seconds: float
    converged: bool
    "Whether the grid utility loss reached ``solve.tolerance``."
    history: list[dict[str, float]]
    "Convergence diagnostics: ``iteration``, ``grid_loss`` per role, ``step``."
    market: dict[str, Any]
    "What was solved: mechanism, traders, slots, valuation, grid sizes."

    def bid_function(self, role: str):
        """The role's ``values -> bids`` function."""
        if role not in self.roles:
            raise ValueError(
                f"no {role!r} in this equilibrium; roles: {', '.join(self.roles)}"
            )
        return self.roles[role].bid_function()

    def summary(self) -> dict[str, Any]:
        """The ``solve --json`` object: bid functions, utility losses, cost."""
        return {
            "roles": {
                name: {
                    "values": r.values,
                    "bids": r.bids,
                    "utility_loss": r.utility_loss,
                }
                for name, r in self.roles.items()
            },
            "iterations": self.iterations,
            "seconds": self.seconds,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    def save(self, path: str | Path) -> Path:
        """Write the solution as JSON, atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict(), allow_nan=False))

    @classmethod
    def from_dict(cls, data: Any, where: str = "solution") -> Solution:
        """Rebuild from :meth:`to_dict` output (``ValueError`` naming what is wrong)."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{where}: not an equilibrium solution ({FORMAT} JSON)")
        try:
            roles = {k: RoleSolution(**v) for k, v in data["roles"].items()}
            return cls(
                roles=roles,
                iterations=int(data["iterations"]),
                seconds=float(data["seconds"]),
                converged=bool(data["converged"]),
                history=list(data["history"]),
                market=dict(data["market"]),
            )
        except (KeyError, TypeError, AttributeError) as err:
            raise ValueError(
                f"{where}: malformed equilibrium solution ({err})"
            ) from None


def load_solution(path: str | Path) -> Solution:
    """Read a solution saved by :meth:`Solution.save` (a file, or a folder holding
    ``equilibrium.json``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "equilibrium.json"
    text = path.read_text(encoding="utf-8")
    return Solution.from_dict(json.loads(text), where=str(path))
