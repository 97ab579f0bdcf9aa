"""A solved equilibrium: bid functions per role, their utility loss, diagnostics.

Saved as plain JSON (never pickle), so a solution reloads anywhere and a user's
file is only ever parsed, not executed. A file read back (``kind: equilibrium
path:``, the solver cache) goes through ``attn_env.fileio.read_user_json``
(regular file, size and nesting caps, no NaN) and then every field is checked
for type and range: anything wrong is one ``UserError`` line naming the file
and the field.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.checks import is_int, is_real, show
from attn_env.errors import UserError
from attn_env.fileio import atomic_write_text, read_user_json

__all__ = [
    "FORMAT",
    "MAX_GRID",
    "RoleSolution",
    "Solution",
    "check_converged",
    "load_solution",
]

FORMAT = "attn-market-equilibrium/1"
"The ``format`` tag of a saved solution."
MAX_GRID = 100_000
"Most grid points (values, bids, history entries) a solution file may hold."
MAX_ITERATIONS = 10_000_000
"Most iterations a solution file may claim (the ``solve.iterations`` cap)."
ROLES = ("buyer", "seller")


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
    "Whether every role's utility loss was within ``solve.tolerance`` of the solve."
    history: list[dict[str, float]]
    "Convergence diagnostics: ``iteration``, ``grid_loss`` per role, ``step``."
    market: dict[str, Any]
    "What was solved: mechanism, traders, slots, valuation, grid sizes."

    @property
    def utility_loss(self) -> float:
        """The worst role's utility loss."""
        return max(r.utility_loss for r in self.roles.values())

    def bid_function(self, role: str):
        """The role's ``values -> bids`` function."""
        if role not in self.roles:
            classes = "classes" in self.market
            raise UserError(
                f"no {role!r} in this equilibrium; "
                + (
                    "it has one bid function per bidder class "
                    f"({', '.join(self.roles)}): ask for a class by name "
                    "(kind: equilibrium and evaluate take "
                    "symmetric solutions only)"
                    if classes
                    else f"roles: {', '.join(self.roles)}"
                )
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
            "converged": self.converged,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    def save(self, path: str | Path) -> Path:
        """Write the solution as JSON, atomically."""
        return atomic_write_text(path, json.dumps(self.to_dict(), allow_nan=False))

    @classmethod
    def from_dict(cls, data: Any, where: str = "solution") -> Solution:
        """Rebuild from :meth:`to_dict` output, every field checked.

        Raises:
            UserError: one line naming ``where`` and the first bad field.
        """
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise UserError(f"{where}: not an equilibrium solution ({FORMAT} JSON)")
        check = _Checker(where)
        raw = check.mapping(data, "roles")
        market = check.market(data)
        classes = [c["name"] for c in market.get("classes") or []]
        if classes and list(raw) != classes:
            raise UserError(
                f"{where}: roles must be the classes {classes!r}, got {list(raw)!r}"
            )
        if not classes and ("buyer" not in raw or not set(raw) <= set(ROLES)):
            raise UserError(
                f"{where}: roles must be buyer (and seller), got {sorted(raw)!r}"
            )
        return cls(
            roles={name: check.role(raw[name], f"roles.{name}") for name in raw},
            iterations=check.integer(data, "iterations", 0, MAX_ITERATIONS),
            seconds=check.number(data, "seconds", 0.0),
            converged=check.flag(data, "converged"),
            history=check.history(data),
            market=market,
        )


class _Checker:
    """Type and range checks of a solution file's fields, each failing in one line."""

    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, name: str, want: str, got: Any) -> UserError:
        return UserError(f"{self.where}: {name} must be {want}, got {show(got)}")

    def get(self, data: dict, key: str, name: str | None = None) -> Any:
        if key not in data:
            raise UserError(f"{self.where}: {name or key} is missing")
        return data[key]

    def mapping(self, data: dict, key: str, name: str | None = None) -> dict:
        value = self.get(data, key, name)
        if not isinstance(value, dict):
            raise self.fail(name or key, "an object", value)
        return value

    def integer(self, data: dict, key: str, low: int, high: int, name=None) -> int:
        value = self.get(data, key, name)
        if not (is_int(value) and low <= value <= high):
            raise self.fail(name or key, f"an integer in [{low}, {high}]", value)
        return value

    def number(self, data: dict, key: str, low: float, name=None) -> float:
        value = self.get(data, key, name)
        if not (is_real(value) and value >= low):
            raise self.fail(name or key, f"a finite number >= {low}", value)
        return float(value)

    def flag(self, data: dict, key: str) -> bool:
        value = self.get(data, key)
        if not isinstance(value, bool):
            raise self.fail(key, "true or false", value)
        return value

    def text(self, data: dict, key: str, name: str) -> str:
        value = self.get(data, key, name)
        if not isinstance(value, str) or len(value) > 200:
            raise self.fail(name, "a name (text)", value)
        return value

    def reals(self, data: dict, key: str, name: str, low: float = -np.inf) -> list:
        value = self.get(data, key, name)
        if not isinstance(value, list) or len(value) > MAX_GRID:
            raise self.fail(name, f"a list of at most {MAX_GRID} numbers", value)
        bad = next((x for x in value if not (is_real(x) and x >= low)), None)
        if bad is not None or any(isinstance(x, bool) for x in value):
            want = "finite numbers" + (f" >= {low}" if low > -np.inf else "")
            raise self.fail(name, want, bad)
        return [float(x) for x in value]

    def role(self, data: Any, name: str) -> RoleSolution:
        if not isinstance(data, dict):
            raise self.fail(name, "an object", data)
        known = {"values", "bids", "utility_loss", "spread", "bid_grid", "strategy"}
        extra = sorted(set(data) - known)
        if extra:
            raise UserError(f"{self.where}: unknown field {name}.{extra[0]}")
        values = self.reals(data, "values", f"{name}.values")
        bids = self.reals(data, "bids", f"{name}.bids", 0.0)
        if not values or len(bids) != len(values):
            raise UserError(
                f"{self.where}: {name}.values and {name}.bids must be non-empty and "
                f"of one length, got {len(values)} and {len(bids)}"
            )
        if np.any(np.diff(values) < 0.0):
            raise UserError(f"{self.where}: {name}.values must be non-decreasing")
        grid = []
        if "bid_grid" in data:
            grid = self.reals(data, "bid_grid", f"{name}.bid_grid")
        strategy = data.get("strategy", [])
        if not isinstance(strategy, list) or (
            strategy and len(strategy) != len(values)
        ):
            raise self.fail(f"{name}.strategy", "one row per value", strategy)
        rows = [
            self.reals({"r": row}, "r", f"{name}.strategy[{i}]", 0.0)
            for i, row in enumerate(strategy)
        ]
        if any(len(row) != len(grid) for row in rows):
            raise UserError(
                f"{self.where}: {name}.strategy rows must have one entry per "
                f"bid_grid point ({len(grid)})"
            )
        return RoleSolution(
            values=values,
            bids=bids,
            utility_loss=self.number(
                data, "utility_loss", -1.0, f"{name}.utility_loss"
            ),
            spread=self.number(data, "spread", 0.0, f"{name}.spread"),
            bid_grid=grid,
            strategy=rows,
        )

    def history(self, data: dict) -> list[dict[str, float]]:
        value = self.get(data, "history")
        if not isinstance(value, list) or len(value) > MAX_GRID:
            raise self.fail("history", f"a list of at most {MAX_GRID} entries", value)
        out = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or len(entry) > 16:
                raise self.fail(f"history[{i}]", "an object of numbers", entry)
            out.append(
                {
                    str(k): self.number(entry, k, -np.inf, f"history[{i}].{k}")
                    for k in entry
                }
            )
        return out

    def market(self, data: dict) -> dict[str, Any]:
        m = self.mapping(data, "market")
        out = dict(m)
        out["mechanism"] = self.text(m, "mechanism", "market.mechanism")
        params = self.mapping(m, "mechanism_params", "market.mechanism_params")
        for key, value in params.items():
            if not (is_real(value) or isinstance(value, str | bool) or value is None):
                raise self.fail(f"market.mechanism_params.{key}", "a number", value)
        out["n_buyers"] = self.integer(m, "n_buyers", 1, MAX_GRID, "market.n_buyers")
        out["n_sellers"] = self.integer(m, "n_sellers", 0, MAX_GRID, "market.n_sellers")
        out["n_slots"] = self.integer(m, "n_slots", 1, MAX_GRID, "market.n_slots")
        for key in ("valuation", "value_dist"):
            if key in m:
                out[key] = self.text(m, key, f"market.{key}")
        if "weights" in m:
            out["weights"] = self.reals(m, "weights", "market.weights", 0.0)
        if m.get("utility") is not None:
            u = self.mapping(m, "utility", "market.utility")
            out["utility"] = {
                "kind": self.text(u, "kind", "market.utility.kind"),
                "rho": self.number(u, "rho", 0.0, "market.utility.rho"),
            }
        if m.get("prior") is not None:
            pr = self.mapping(m, "prior", "market.prior")
            out["prior"] = {
                "kind": self.text(pr, "kind", "market.prior.kind"),
                "common": self.number(pr, "common", 0.0, "market.prior.common"),
                "draws": None
                if pr.get("draws") is None
                else self.integer(pr, "draws", 1, 10**9, "market.prior.draws"),
            }
        if m.get("roi_target") is not None:
            out["roi_target"] = self.number(m, "roi_target", 0.0, "market.roi_target")
        if m.get("classes") is not None:
            raw = m["classes"]
            if not isinstance(raw, list) or not 0 < len(raw) <= MAX_GRID:
                raise self.fail("market.classes", "a non-empty list", raw)
            out["classes"] = [self._class(c, i) for i, c in enumerate(raw)]
        return out

    def _class(self, c: Any, i: int) -> dict[str, Any]:
        where = f"market.classes[{i}]"
        if not isinstance(c, dict):
            raise self.fail(where, "an object", c)
        name = self.text(c, "name", f"{where}.name")
        if not name.isidentifier() or name in ROLES:
            raise self.fail(f"{where}.name", "an identifier (not buyer, seller)", name)
        agents = self.get(c, "agents", f"{where}.agents")
        if not isinstance(agents, list) or not all(
            isinstance(a, str) and len(a) <= 200 for a in agents
        ):
            raise self.fail(f"{where}.agents", "a list of names", agents)
        out: dict[str, Any] = {"name": name, "agents": agents}
        for key in ("value_low", "value_high"):
            v = c.get(key)
            out[key] = None if v is None else self.number(c, key, 0.0, f"{where}.{key}")
        return out


def check_converged(solution: Solution, tolerance: float, allow: bool, where: str):
    """``solution`` if its worst utility loss is within ``tolerance`` (or ``allow``).

    Raises:
        UserError: one line naming ``where``, the loss and how to go on.
    """
    loss = solution.utility_loss
    if allow or loss <= tolerance:
        return solution
    raise UserError(
        f"{where}: the equilibrium did not converge (utility loss {loss:.4f} > "
        f"solve.tolerance {tolerance:g}); solve on a finer grid or with more "
        "iterations, or set solve: {allow_unconverged: true} to use it anyway"
    )


def load_solution(path: str | Path, what: str = "equilibrium file") -> Solution:
    """Read a solution saved by :meth:`Solution.save` (a file, or a folder holding
    ``equilibrium.json``), with limits and every field checked.

    Raises:
        FileNotFoundError: no such file.
        UserError: anything else wrong with it (one line naming it).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "equilibrium.json"
    return Solution.from_dict(read_user_json(path, what), where=str(path))
