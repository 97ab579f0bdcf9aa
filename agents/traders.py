"""Double-auction traders: ZI-C (Gode–Sunder), ZIP (Cliff), GD (Gjerstad–Dickhaut).

They trade in any market (one-sided, two-sided, matching), but were designed for
double auctions. The adaptive ones (ZIP, GD) learn from the public feedback of
each round, the dict that ``observe`` receives (``agents`` package docstring):
``clearing_price [N]`` (``nan`` where nothing traded), and where the market has
them ``bids [N, n]``, ``asks [N, m]``, ``alloc [N, n]``, ``seller_alloc [N, m]``
and the agent's own ``own_alloc [N]``. Every key but ``clearing_price`` is
optional; a missing one is inferred from the prices (documented per class).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.errors import UserError
from attn_env.observation import ACTIVE, VALUE, as_actions, is_seller

__all__ = ["GDAgent", "ZICAgent", "ZIPAgent"]


def _array(feedback: dict[str, Any], key: str, n: int) -> NDArray[np.float64] | None:
    """``feedback[key]`` as float64 with leading axis ``n``; ``None`` if absent."""
    if key not in feedback or feedback[key] is None:
        return None
    x = np.asarray(feedback[key], dtype=np.float64)
    if x.shape[:1] != (n,):
        raise UserError(
            f"feedback[{key!r}] must have leading size {n}, got shape {x.shape}"
        )
    return x


class ZICAgent:
    """Zero intelligence, constrained (Gode & Sunder 1993).

    Buyers bid ``U[0, value]``, sellers ask ``U[cost, max_price]``: random, but
    never a loss-making order. No state.

    Args:
        max_price: top of the price range (from the market: the env's ``max_bid``).
    """

    market_params = ("max_price",)

    def __init__(self, max_price: float = 1.0) -> None:
        if not max_price > 0:
            raise UserError(f"max_price must be > 0, got {max_price!r}")
        self.max_price = float(max_price)

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        """No state."""

    def observe(self, feedback: dict[str, Any]) -> None:
        """ZI-C ignores the market."""

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        v = obs[:, VALUE].astype(np.float64)
        u = rng.random(v.shape[0])
        top = np.maximum(self.max_price, v)
        ask = v + u * (top - v)
        return as_actions(np.where(is_seller(obs), ask, u * v))


class ZIPAgent:
    """Zero intelligence plus (Cliff 1997): an adaptive profit margin.

    Shout price ``p = limit * (1 + margin)`` for sellers and ``limit * (1 - margin)``
    for buyers (``margin >= 0``; the limit is the value or cost). After each round
    the trader moves its price toward a target by the Widrow–Hoff rule with momentum,
    ``G <- gamma*G + (1-gamma)*beta*(target - p)``, ``p <- p + G``, and reads the
    margin back from ``p``. Round-based form of Cliff's rules, with ``q`` the
    round's clearing price:

    - trade at ``q`` and the trader's price was at least as good as ``q`` (seller
      ``p <= q``, buyer ``p >= q``): widen the margin toward ``R_up*q + A_up``
      (seller) / ``R_down*q + A_down`` (buyer);
    - trade at ``q``, the trader did not trade and was worse than ``q``: narrow the
      margin toward ``q`` perturbed the other way;
    - no trade: narrow the margin toward its own price perturbed (sellers down,
      buyers up).

    ``R_up ~ U[1, 1.05]``, ``R_down ~ U[0.95, 1]``, ``A_up ~ U[0, 0.05]``,
    ``A_down ~ U[-0.05, 0]`` (``A`` scaled by ``max_price``). ``beta ~ U[0.1, 0.5]``,
    ``gamma ~ U[0, 0.1]`` and the initial margin ``~ U[0.05, 0.35]`` are drawn per
    market on ``reset``. Margins persist across episodes (the trader keeps learning).
    Whether the trader itself traded is read from ``own_alloc``, else inferred as
    "its price was at least as good as ``q``". Agents inactive in a round (already
    traded in a CDA period) do not update.

    Args:
        max_price: top of the price range.
        beta: learning-rate range ``(low, high)``.
        gamma: momentum range ``(low, high)``.
        margin0: initial-margin range ``(low, high)``.
    """

    market_params = ("max_price",)

    def __init__(
        self,
        max_price: float = 1.0,
        beta: tuple[float, float] = (0.1, 0.5),
        gamma: tuple[float, float] = (0.0, 0.1),
        margin0: tuple[float, float] = (0.05, 0.35),
    ) -> None:
        for name, (lo, hi) in (("beta", beta), ("gamma", gamma), ("margin0", margin0)):
            if not 0.0 <= lo <= hi:
                raise UserError(
                    f"{name} must be a range 0 <= low <= high, got {(lo, hi)}"
                )
        if not max_price > 0:
            raise UserError(f"max_price must be > 0, got {max_price!r}")
        self.max_price = float(max_price)
        self.beta_range, self.gamma_range, self.margin_range = beta, gamma, margin0
        self.reset(0, np.random.default_rng(0))

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        self.margin = rng.uniform(*self.margin_range, size=num_envs)
        self.beta = rng.uniform(*self.beta_range, size=num_envs)
        self.gamma = rng.uniform(*self.gamma_range, size=num_envs)
        self.momentum = np.zeros(num_envs)
        self._rng = rng
        self._last: tuple[NDArray, NDArray, NDArray, NDArray] | None = None

    def _price(self, limit: NDArray, seller: NDArray) -> NDArray:
        ask = np.minimum(limit * (1.0 + self.margin), np.maximum(self.max_price, limit))
        return np.where(seller, ask, limit * (1.0 - self.margin))

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        if self.margin.shape[0] != obs.shape[0]:
            self.reset(obs.shape[0], rng)
        limit = obs[:, VALUE].astype(np.float64)
        seller = is_seller(obs)
        price = self._price(limit, seller)
        active = obs[:, ACTIVE] > 0.5 if obs.shape[1] > ACTIVE else np.ones_like(seller)
        self._last = (price, limit, seller, active)
        return as_actions(price)

    def observe(self, feedback: dict[str, Any]) -> None:
        if self._last is None:
            return
        p, limit, seller, active = self._last
        n = p.shape[0]
        q = _array(feedback, "clearing_price", n)
        if q is None:
            raise UserError("ZIP needs feedback['clearing_price'] (nan where no trade)")
        traded = np.isfinite(q)
        q = np.where(traded, q, p)
        better = np.where(seller, p <= q, p >= q)
        own = _array(feedback, "own_alloc", n)
        own_traded = own > 0 if own is not None else traded & better

        rng, scale = self._rng, self.max_price
        r_up, r_dn = rng.uniform(1.0, 1.05, n), rng.uniform(0.95, 1.0, n)
        a_up, a_dn = (
            rng.uniform(0.0, 0.05, n) * scale,
            rng.uniform(-0.05, 0.0, n) * scale,
        )
        up, down = r_up * q + a_up, r_dn * q + a_dn
        # sellers widen by asking more, buyers by bidding less
        widen = np.where(seller, up, down)
        narrow = np.where(seller, down, up)
        narrow_own = np.where(seller, r_dn * p + a_dn, r_up * p + a_up)
        target = np.where(
            traded & better, widen, np.where(traded & ~own_traded, narrow, narrow_own)
        )
        update = active & ~(traded & ~better & own_traded)

        delta = self.beta * (target - p)
        momentum = self.gamma * self.momentum + (1.0 - self.gamma) * delta
        new_p = p + momentum
        safe = np.maximum(limit, 1e-9)
        cap = np.maximum(self.max_price / safe - 1.0, 0.0)
        margin = np.where(
            seller,
            np.clip(new_p / safe - 1.0, 0.0, cap),
            np.clip(1.0 - new_p / safe, 0.0, 1.0),
        )
        # a zero limit carries no information about the margin: keep it
        ok = update & (limit > 1e-9)
        self.margin = np.where(ok, margin, self.margin)
        self.momentum = np.where(ok, momentum, self.momentum)
        self._last = None


def _shouts(
    feedback: dict[str, Any], n: int
) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """The round's orders and which traded: ``bids, bid_taken, asks, ask_taken``.

    Missing orders fall back to the clearing price as one taken bid and one taken
    ask; missing allocations to "traded iff at least as good as the price".
    Orders are ``nan`` where absent (inactive traders, one-sided markets).
    """
    q = _array(feedback, "clearing_price", n)
    if q is None:
        raise UserError("GD needs feedback['clearing_price'] (nan where no trade)")
    q_col = q[:, None]
    bids, asks = _array(feedback, "bids", n), _array(feedback, "asks", n)
    if bids is None and asks is None:
        # only the price is public: it was one accepted bid and one accepted ask
        taken = np.isfinite(q_col)
        return q_col.copy(), taken, q_col.copy(), taken.copy()
    if bids is None:
        bids, bid_taken = np.full((n, 0), np.nan), np.zeros((n, 0), bool)
    else:
        bids = bids.reshape(n, -1).copy()
        alloc = _array(feedback, "alloc", n)
        bid_taken = alloc.reshape(n, -1) > 0 if alloc is not None else bids >= q_col
    if asks is None:
        asks, ask_taken = np.full((n, 0), np.nan), np.zeros((n, 0), bool)
    else:
        asks = asks.reshape(n, -1).copy()
        sold = _array(feedback, "seller_alloc", n)
        ask_taken = sold.reshape(n, -1) > 0 if sold is not None else asks <= q_col
    for key, orders in (("active", bids), ("seller_active", asks)):
        mask = _array(feedback, key, n)
        if mask is not None and mask.reshape(n, -1).shape == orders.shape:
            orders[mask.reshape(n, -1) <= 0.5] = np.nan
    return bids, bid_taken & np.isfinite(bids), asks, ask_taken & np.isfinite(asks)


class GDAgent:
    """Gjerstad & Dickhaut (1998): belief-based, expected-surplus maximising orders.

    From the orders of the last ``memory`` rounds the trader forms the belief that
    an order at price ``x`` trades:

    - buyer: ``q(b) = (TB(<=b) + A(<=b)) / (TB(<=b) + A(<=b) + RB(>=b))``
    - seller: ``p(a) = (TA(>=a) + B(>=a)) / (TA(>=a) + B(>=a) + RA(<=a))``

    (``TB``/``RB``: taken/rejected bids, ``A``/``B``: all asks/bids, counted below or
    above the price), and shouts the grid price that maximises expected surplus
    ``(value - b) q(b)`` / ``(a - cost) p(a)``. Where no order informs a price the
    belief is the linear prior ``b / max_price`` (``1 - a / max_price``). The
    original interpolates with cubic splines; a price grid of ``grid`` points on
    ``[0, max_price]`` replaces them (documented simplification). Memory is a ring
    buffer of ``memory`` rounds, so state stays bounded.

    Args:
        max_price: top of the price range.
        memory: rounds of orders remembered.
        grid: price grid points.
    """

    market_params = ("max_price",)

    def __init__(
        self, max_price: float = 1.0, memory: int = 5, grid: int = 101
    ) -> None:
        if not max_price > 0:
            raise UserError(f"max_price must be > 0, got {max_price!r}")
        if memory < 1 or grid < 2:
            raise UserError(
                f"need memory >= 1 and grid >= 2, got memory={memory}, grid={grid}"
            )
        self.max_price, self.memory, self.grid_size = (
            float(max_price),
            int(memory),
            int(grid),
        )
        self.grid = np.linspace(0.0, self.max_price, self.grid_size)
        self.reset(0, np.random.default_rng(0))

    def reset(self, num_envs: int, rng: np.random.Generator) -> None:
        self.num_envs = num_envs
        self._history: list[tuple[NDArray, NDArray, NDArray, NDArray]] = []

    def observe(self, feedback: dict[str, Any]) -> None:
        self._history.append(_shouts(feedback, self.num_envs))
        del self._history[: -self.memory]

    def _count_le(self, x: NDArray) -> NDArray:
        """``[N, M]`` prices (nan ignored) -> ``[N, G]`` count of ``x <= grid[k]``."""
        n, g = x.shape[0], self.grid_size
        step = self.max_price / (g - 1)
        ok = np.isfinite(x)
        idx = np.clip(np.ceil(np.where(ok, x, 0.0) / step - 1e-9), 0, g).astype(
            np.int64
        )
        rows = np.broadcast_to(np.arange(n)[:, None], x.shape)
        hist = np.bincount((rows * (g + 1) + idx)[ok], minlength=n * (g + 1))
        return np.cumsum(hist.reshape(n, g + 1)[:, :g], axis=1)

    def _count_ge(self, x: NDArray) -> NDArray:
        """``[N, M]`` prices (nan ignored) -> ``[N, G]`` count of ``x >= grid[k]``."""
        n, g = x.shape[0], self.grid_size
        step = self.max_price / (g - 1)
        ok = np.isfinite(x) & (x >= 0)
        idx = np.clip(np.floor(np.where(ok, x, 0.0) / step + 1e-9), 0, g - 1).astype(
            np.int64
        )
        rows = np.broadcast_to(np.arange(n)[:, None], x.shape)
        hist = np.bincount((rows * g + idx)[ok], minlength=n * g).reshape(n, g)
        return np.cumsum(hist[:, ::-1], axis=1)[:, ::-1]

    def belief(self, seller: bool) -> NDArray[np.float64]:
        """Probability that an order trades at each grid price, ``[N, G]``.

        Buyers: ``q(b)``; sellers (``seller=True``): ``p(a)``.
        """
        n, nan = self.num_envs, np.nan
        prior = self.grid / self.max_price
        if not self._history:
            return np.broadcast_to(
                1.0 - prior if seller else prior, (n, self.grid_size)
            )
        bids, bid_taken, asks, ask_taken = (
            np.concatenate([h[i] for h in self._history], axis=1) for i in range(4)
        )
        if seller:  # TA(>=a) + B(>=a) against RA(<=a)
            num = self._count_ge(
                np.concatenate([np.where(ask_taken, asks, nan), bids], 1)
            )
            den = num + self._count_le(np.where(ask_taken, nan, asks))
            prior = 1.0 - prior
        else:  # TB(<=b) + A(<=b) against RB(>=b)
            num = self._count_le(
                np.concatenate([np.where(bid_taken, bids, nan), asks], 1)
            )
            den = num + self._count_ge(np.where(bid_taken, nan, bids))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, prior)

    def beliefs(self) -> tuple[NDArray, NDArray]:
        """``(q, p)``: buyers' and sellers' beliefs on the grid, ``[N, G]`` each."""
        return self.belief(seller=False), self.belief(seller=True)

    def act(self, obs: NDArray, rng: np.random.Generator) -> NDArray[np.float32]:
        if obs.shape[0] != self.num_envs:
            self.reset(obs.shape[0], rng)
        v = obs[:, VALUE].astype(np.float64)[:, None]
        seller = is_seller(obs)
        g = self.grid[None, :]
        out = np.zeros(v.shape[0])
        if not seller.all():
            surplus = np.where(g <= v, (v - g) * self.belief(seller=False), -np.inf)
            out = self.grid[np.argmax(surplus, axis=1)]
        if seller.any():
            surplus = np.where(g >= v, (g - v) * self.belief(seller=True), -np.inf)
            # a cost above the grid has no admissible ask: ask the cost itself
            ask = np.where(
                v[:, 0] > self.max_price, v[:, 0], self.grid[np.argmax(surplus, axis=1)]
            )
            out = np.where(seller, ask, out)
        return as_actions(out)
