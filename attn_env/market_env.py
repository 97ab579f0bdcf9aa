"""The attention market as a PettingZoo environment (``attention_market_v1``).

Buyers bid for slots of attention; in two-sided mechanisms sellers offer units
with a private cost; a mechanism from ``attn_env.mechanisms`` clears the market
every round. Build it with ``attn_env.parallel_env(**options)`` (parallel API),
``attn_env.env(**options)`` (AEC API with PettingZoo's order-enforcing wrapper)
or ``attn_env.raw_env(**options)`` (AEC, unwrapped).

==================  ========================================================
Import              ``from attn_env import parallel_env, env, raw_env``
Actions             Continuous, ``Box(0, max_bid, (1,), float32)``; with
                    ``action="shade"``: ``Box(0, 1, (1,), float32)``
Parallel API        Yes
Manual control      No
Agents              ``buyer_0..buyer_{n-1}`` (+ ``seller_0..seller_{m-1}``)
Agents count        ``n_buyers`` (+ ``n_sellers`` in two-sided mechanisms)
Observation shape   ``(8 + history + F,)``, ``F = 0`` under ``feedback="none"``
Observation values  ``Box(0, high, float32)``, bounds below
==================  ========================================================

Agents
------
============  =====================================  ============================
agent         present in                             what it trades
============  =====================================  ============================
``buyer_i``   every mechanism                        bids per unit of attention
``seller_j``  ``k_double``, ``mcafee``,              asks for its one unit
              ``call_market``, ``cda``               (private cost ``c_j``)
============  =====================================  ============================

In one-sided auctions (``first_price``, ``second_price``, ``gsp``, ``vcg``) and
matchings (``assignment``, ``stable_matching``) the publisher is the market and
has no agent. ``n_sellers = 0`` in a two-sided mechanism means ``n_buyers``
sellers.

Action space
------------
The option ``action`` says what an action is (``attn_env.actions``):

``action="auto"`` (default) or ``action="absolute"``
    Every agent: ``Box(0, max_bid, shape=(1,), float32)``, a bid (buyer) or ask
    (seller) per unit of attention; ``max_bid`` defaults to the top of the price
    range: ``value_high`` (one-sided, matching) or ``max(value_high, cost_high)``
    (two-sided). Truthful play is ``action = obs[0]``.
``action="shade"``
    Every agent: ``Box(0, 1, shape=(1,), float32)``, a shading factor ``s``
    (truthfulness). Buyer: ``bid = value_low + s * (value - value_low)``, in
    ``[value_low, value]`` (values on ``[0, 1]``: ``bid = s * value``); seller:
    ``ask = cost_high - s * (cost_high - cost)``, in ``[cost, cost_high]``
    (``value`` and ``cost`` clipped into their ranges first). Truthful play is
    ``action = 1``; first price on ``U[0, 1]`` with ``n`` buyers has its
    equilibrium at ``s = (n - 1) / n``. Out-of-range ``s`` is clipped to
    ``[0, 1]``; the rules below then apply to the resulting bid or ask. This is
    the parameterisation under which generic RL libraries (SB3, SuperSuit)
    learn: with absolute bids their policies collapse to bidding 0.
    (``auto`` differs from ``absolute`` only for ``attn-market train``: its
    learners act under ``shade`` unless ``absolute`` is set explicitly.)

- Out-of-range actions are **clipped** to ``[0, max_bid]`` (standard practice for
  Box actions: policies with Gaussian heads emit any real number). A NaN action
  raises ``ValueError`` naming the agent.
- Budgets: a buyer's effective bid is ``min(bid, budget_left / alloc_max)``,
  with ``alloc_max`` the largest slot attention this round (1 in two-sided
  markets), so its payment (``<= bid x alloc`` in every mechanism) never exceeds
  the budget left. A buyer with no budget left is inactive: it bids 0; in
  two-sided markets it is out of the order book (it sets no price and takes no
  seller's unit), elsewhere any slot it wins at 0 is dropped (the slot stays
  unsold).
- In ``matching`` mechanisms buyer ``i``'s value for slot ``j`` passed to the
  mechanism is ``bid_i * alpha_j``.

Observation space
-----------------
A float32 vector shared by buyers and sellers (``obs[3]`` tells them apart), so
one policy can serve every agent (SuperSuit / SB3 / RLlib parameter sharing):

====  ========================================================  =================
idx   meaning                                                   upper bound
====  ========================================================  =================
0     private value per unit this round (buyer ``theta*r``,     top of the price
      seller: its cost)                                         range
1     buyer: budget left (unlimited budgets start at            ``budget`` or
      ``rounds*max_bid`` and never bind); seller: 0             ``rounds*max_bid``
2     round index / rounds                                      1
3     role: 0 buyer, 1 seller                                   1
4     last round's clearing price (0 before the first round     ``max_bid``
      and when nothing traded)
5     own allocation last round (attention won / unit sold)     1
6     own payment last round (seller: money received)           ``max_bid``
7     active: 1 if the agent can trade this round (budget       1
      left; in ``cda`` not yet traded this period)
8+    the last ``history`` clearing prices, most recent first   ``max_bid``
..    ``feedback`` other than ``none``: the last ``F =          ``max_bid``
      max(1, history)`` values published to the agent
      (``attn_env.feedback``), most recent first
====  ========================================================  =================

All lower bounds are 0; entries are clipped into the box.

Rewards
-------
The round's utility (quasi-linear): buyer ``theta_i r_i alpha_j - pay_i``
(0 when it wins nothing), seller ``receipt_j - c_j`` when it sells, else 0.
Under ``utility: {kind: crra, rho}`` a buyer's reward is ``u(x) = sign(x)
|x|^rho`` of that surplus ``x`` (risk aversion; ``info["utility"]`` too).
With ``value_ranges`` a buyer's theta is drawn from its own ``[low, high]``
(the market's draw mapped affinely onto it: asymmetric bidders).

Infos
-----
``info[agent]`` holds the same flat keys with the same types at ``reset`` and
after every ``step``, in every mechanism (fixed specs for TorchRL, RLlib,
SuperSuit): numbers are ``float`` (``nan`` where undefined, never ``None``),
flags ``bool``; nothing is nested. The gymnasium view's ``info`` holds the same
keys for its learner. ``INFO_KEYS`` lists them in this order:

==========================  =====  ==============================================
key                         type   meaning (``nan`` at ``reset``: no round yet)
==========================  =====  ==============================================
``value``                   float  value per unit (buyer ``theta*r``) or cost
                                   (seller) of the round played (at ``reset``:
                                   of the coming round, as ``obs[0]``)
``bid``                     float  effective bid or ask after the action map,
                                   clipping and budget cap
``alloc``                   float  attention won / unit traded
``payment``                 float  paid (buyer) / received (seller), >= 0
``utility``                 float  the round's reward
``clearing_price``          float  the round's headline price, ``nan`` when
                                   nothing traded
``active``                  bool   could trade in the round (at ``reset``: in
                                   the coming round, as ``obs[7]``)
``traded``                  bool   won or traded something (``False`` at reset)
``episode_efficiency``      float  welfare / first-best welfare, so far
``episode_welfare``         float  realised welfare, so far (and below)
``episode_optimal_welfare`` float  first-best welfare
``episode_revenue``         float  buyers' payments
``episode_budget_surplus``  float  payments - sellers' receipts
``episode_mean_price``      float  payments per unit traded
``episode_volume``          float  units of attention / goods traded
==========================  =====  ==============================================

The ``episode_*`` keys are the market's metrics over the episode so far (the
rounds played since ``reset``: 0 at ``reset``); at the episode's last step they
are the episode's metrics. ``efficiency`` is ``nan`` while the first-best
welfare is 0 (at ``reset``), ``mean_price`` while nothing has traded. They are
not called ``episode``, a key that SB3's ``Monitor`` and gymnasium's
``RecordEpisodeStatistics`` own. (Running values rather than ``nan`` until the
end: gymnasium's ``check_env`` and PettingZoo's seed tests compare infos with
``==``, under which ``nan`` differs from itself.)

Dynamics
--------
An episode has ``rounds`` rounds and ends (``terminated``) after the last one;
nothing truncates. ``redraw="round"`` draws new values (and costs) every round,
one sealed-bid market per round; ``redraw="episode"`` keeps them for the
episode. In ``cda`` a draw of values opens a trading period (Gode & Sunder):
each round every trader that has not yet traded places a new order, orders
arrive in random order, and a trader leaves (``obs[7] = 0``) once its unit has
traded; its actions are then ignored. The CDA's natural setting is
``redraw="episode"`` with several rounds. In the other mechanisms every round is
a fresh sealed-bid market (slots and units are supplied again). First-best
welfare, the denominator of ``efficiency``, is summed per round over the
agents active in it, except in ``cda`` where it is that of the period (one unit
per trader per draw of values).

Valuations: ``valuation="uniform"`` (``theta ~ value_dist`` on
``[value_low, value_high]``, ``r = 1``, ``alpha = 1`` or decaying click-through
rates from ``valuation_params={"slot_weights": ...}``: a list, ``dcg``,
``geometric``, ``cascade``; docs/position_models.md) or ``"attention"`` (``r`` and
``alpha`` from a transformer's attention maps, ``valuation_params`` passed to
``attn_env.valuations.make_source``). Sellers' costs are
``U[cost_low, cost_high]``. Observation bounds assume ``r <= 1`` and
``alpha <= 1`` as both sources guarantee.

Arguments
---------
Keyword options are the fields of :class:`attn_env.config.EnvConfig`
(``mechanism``, ``mechanism_params``, ``n_buyers``, ``n_sellers``, ``n_slots``,
``valuation``, ``valuation_params``, ``value_dist``, ``value_low``,
``value_high``, ``cost_low``, ``cost_high``, ``rounds``, ``redraw``,
``budget``, ``history``, ``feedback``, ``max_bid``, ``action``,
``exposure_floor``), or
``config=EnvConfig(...)`` with options overriding it; plus ``render_mode`` and
``seed`` (used by the first ``reset()`` without a seed). Unknown options raise
``ValueError`` listing the known ones. ``exposure_floor`` (slot markets; default
0, off) promises each buyer at least that expected share of a page's attention
through a free lottery of the slots in ``n_buyers * exposure_floor`` of rounds
(``attn_env.mechanisms.exposure_floor``).

Rendering
---------
``render_mode="ansi"``: ``render()`` returns a text table of the last round
(values, bids, allocations, payments, utilities, clearing price); ``"human"``
prints it after every step; ``"rgb_array"`` returns the round as an RGB image,
a ``uint8`` array ``[H, W, 3]`` (gymnasium convention): a bar chart of each
agent's value and bid with the clearing price as a line (drawn with
matplotlib's Agg canvas, imported on the first render).

State
-----
``state()`` (for centralised critics) is every agent's observation concatenated
in ``possible_agents`` order, ``state_space`` the matching box.

Version history
---------------
* v0: initial release.
* v1: infos hold the same flat keys at ``reset`` and every ``step`` (``nan``,
  not ``None``, where undefined; ``episode_*`` keys, the episode's metrics so
  far, instead of the nested ``metrics`` of the last round);
  ``render_mode="rgb_array"``; the ``action`` option (``absolute``, ``shade``);
  the ``feedback`` option (``none``, the default, leaves the layout as it was).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.spaces import Box
from gymnasium.utils import seeding
from pettingzoo import ParallelEnv
from pettingzoo.utils import wrappers
from pettingzoo.utils.conversions import parallel_to_aec_wrapper

from attn_env import mechanisms
from attn_env.config import EnvConfig, make_config
from attn_env.core import MarketCore
from attn_env.errors import UserError
from attn_env.metrics import METRIC_KEYS

__all__ = [
    "INFO_KEYS",
    "MarketParallelEnv",
    "agent_infos",
    "env",
    "parallel_env",
    "raw_env",
    "render_rgb",
    "render_table",
]

RENDER_MODES = ("ansi", "human", "rgb_array")
_ROUND_KEYS = ("value", "bid", "alloc", "payment", "utility")
INFO_KEYS = (
    *_ROUND_KEYS,
    "clearing_price",
    "active",
    "traded",
    *(f"episode_{k}" for k in METRIC_KEYS),
)
"Keys of every agent's info, at ``reset`` and every ``step`` (module docstring)."


class MarketParallelEnv(ParallelEnv):
    """One attention market (see the module docstring for the manual)."""

    metadata = {  # noqa: RUF012 - PettingZoo reads a class attribute
        "name": "attention_market_v1",
        "render_modes": list(RENDER_MODES),
        "is_parallelizable": True,
    }

    def __init__(
        self,
        config: EnvConfig | None = None,
        render_mode: str | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> None:
        self.config = make_config(config, **options)
        self.render_mode = check_render_mode(render_mode)
        self.core = MarketCore(self.config, num_envs=1)
        spec = self.core.spec
        self.possible_agents = spec.agents
        self.agents: list[str] = []
        self._index = {a: i for i, a in enumerate(self.possible_agents)}
        self._obs_space = Box(spec.obs_low, spec.obs_high, dtype=np.float32)
        self._act_space = Box(0.0, spec.action_high, shape=(1,), dtype=np.float32)
        n = spec.n_agents
        self.state_space = Box(
            np.tile(spec.obs_low, n), np.tile(spec.obs_high, n), dtype=np.float32
        )
        self._default_seed = seed
        self.np_random: np.random.Generator | None = None
        self.np_random_seed: int | None = None

    def observation_space(self, agent: str) -> Box:
        """The one observation box (the same object each call, as PettingZoo wants)."""
        self._check_agent(agent)
        return self._obs_space

    def action_space(self, agent: str) -> Box:
        """The one action box (the same object each call)."""
        self._check_agent(agent)
        return self._act_space

    def _check_agent(self, agent: str) -> None:
        if agent not in self._index:
            raise UserError(
                f"unknown agent {agent!r}; agents: {', '.join(self.possible_agents)}"
            )

    def reset(
        self, seed: int | None = None, options: dict | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, dict]]:
        """Start an episode; ``seed`` reseeds the generator (``options`` unused)."""
        if seed is None and self.np_random is None:
            seed = self._default_seed
        if seed is not None or self.np_random is None:
            self.np_random, self.np_random_seed = seeding.np_random(seed)
        self.agents = self.possible_agents[:]
        self.core.reset(self.np_random)
        obs = self.core.observe()[0]
        infos = agent_infos(self.core, self._index)
        return {a: obs[i] for i, a in enumerate(self.agents)}, infos

    def step(self, actions: dict[str, Any]):
        """Play one round with every live agent's action."""
        if not self.agents:
            raise UserError("step() called on a finished episode; call reset() first")
        missing = [a for a in self.agents if a not in actions]
        if missing:
            raise UserError(f"missing actions for {', '.join(missing)}")
        extra = [a for a in actions if a not in self._index]
        if extra:
            raise UserError(
                f"actions for unknown agent(s) {', '.join(map(repr, extra))}; "
                f"agents: {', '.join(self.possible_agents)}"
            )
        row = np.empty((1, len(self.possible_agents)))
        for a, i in self._index.items():
            act = np.asarray(actions.get(a, 0.0), dtype=np.float64).reshape(-1)
            if act.size != 1:
                raise UserError(
                    f"action of {a} must hold one number, got {actions[a]!r}"
                )
            row[0, i] = act[0]
        rew, done, info = self.core.step(self.core.to_bids(row), self.np_random)
        over = bool(done[0])
        obs = self.core.observe()[0]
        infos = agent_infos(self.core, self._index, info)
        agents = self.agents
        observations = {a: obs[self._index[a]] for a in agents}
        rewards = {a: float(rew[0, self._index[a]]) for a in agents}
        terminations = dict.fromkeys(agents, over)
        truncations = dict.fromkeys(agents, False)
        infos = {a: infos[a] for a in agents}
        if over:
            self.agents = []
        if self.render_mode == "human":
            self.render()
        return observations, rewards, terminations, truncations, infos

    def state(self) -> np.ndarray:
        """Global state: every agent's observation, concatenated in agent order."""
        return self.core.observe()[0].reshape(-1)

    def render(self) -> str | np.ndarray | None:
        """The last round: ``ansi`` a table, ``human`` printed, ``rgb_array`` image."""
        if self.render_mode is None:
            import gymnasium

            gymnasium.logger.warn("render() called without a render_mode; pass one")
        return render_out(self.render_mode, self.core, self.possible_agents)

    def close(self) -> None:
        """Nothing to release."""

    def __repr__(self) -> str:
        c = self.config
        return (
            f"MarketParallelEnv(mechanism={c.mechanism!r}, n_buyers={c.n_buyers}, "
            f"n_sellers={self.core.spec.n_sellers}, n_slots={c.n_slots}, "
            f"rounds={c.rounds})"
        )


def agent_infos(
    core: MarketCore,
    index: dict[str, int],
    info: dict[str, Any] | None = None,
    market: int = 0,
) -> dict[str, dict[str, float | bool]]:
    """Every agent's flat info (``INFO_KEYS``) in ``market`` of ``core``.

    ``info`` is the round's info arrays from ``core.step`` (``None`` at reset).
    The ``episode_*`` keys are the episode's metrics so far (``core.metrics()``).
    """
    nan = float("nan")
    if info is None:
        values, active = core.values()[market], core.active()[market]
        price = nan
    else:
        values, active = info["value"][market], info["active"][market]
        price = float(info["clearing_price"][market])
    met = core.metrics()
    episode = {f"episode_{k}": float(met[k][market]) for k in METRIC_KEYS}
    out = {}
    for a, i in index.items():
        d: dict[str, float | bool] = {"value": float(values[i])}
        for k in _ROUND_KEYS[1:]:
            d[k] = nan if info is None else float(info[k][market, i])
        d["clearing_price"] = price
        d["active"] = bool(active[i])
        d["traded"] = False if info is None else bool(info["traded"][market, i])
        d.update(episode)
        out[a] = d
    return out


def check_render_mode(render_mode: str | None) -> str | None:
    """``render_mode`` itself when it is ``None`` or one of ``RENDER_MODES``."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise UserError(
            f"render_mode must be None or one of {', '.join(RENDER_MODES)}, "
            f"got {render_mode!r}"
        )
    return render_mode


def render_out(
    render_mode: str | None, core: MarketCore, agents: list[str], market: int = 0
) -> str | np.ndarray | None:
    """The last round: a table (``ansi``), printed (``human``), an RGB image
    (``rgb_array``), or ``None`` (no render mode)."""
    if render_mode is None:
        return None
    if render_mode == "rgb_array":
        return render_rgb(core, agents, market)
    text = render_table(core, agents, market)
    if render_mode == "human":
        print(text)
        return None
    return text


def render_table(core: MarketCore, agents: list[str], market: int = 0) -> str:
    """The last round of ``market`` as a fixed-width text table."""
    c = core.config
    last = core.state.last_round
    name = mechanisms.name_of(c.mechanism)
    head = f"{name}  round {int(core.state.round[market])}/{c.rounds}"
    if last is None:
        values = core.values()[market]
        lines = [head + "  (no round played yet)", f"{'agent':<12}{'value':>9}"]
        lines += [f"{a:<12}{values[i]:>9.4f}" for i, a in enumerate(agents)]
        return "\n".join(lines)
    price = float(last["clearing_price"][market])
    head = f"{name}  round {int(last['round'][market]) + 1}/{c.rounds}"
    head += "  clearing price " + ("-" if np.isnan(price) else f"{price:.4f}")
    cols = ("value", "bid", "alloc", "payment", "utility")
    lines = [head, f"{'agent':<12}" + "".join(f"{k:>10}" for k in cols)]
    for i, a in enumerate(agents):
        cells = "".join(f"{float(last[k][market, i]):>10.4f}" for k in cols)
        mark = "" if last["active"][market, i] else "  (inactive)"
        lines.append(f"{a:<12}{cells}{mark}")
    return "\n".join(lines)


def render_rgb(core: MarketCore, agents: list[str], market: int = 0) -> np.ndarray:
    """The last round of ``market`` as an RGB image ``uint8 [H, W, 3]``.

    A bar chart of each agent's value and bid (before the first round: values
    only) with the clearing price as a horizontal line.
    """
    from attn_env.figures import new_figure

    c = core.config
    last = core.state.last_round
    name = mechanisms.name_of(c.mechanism)
    fig, ax = new_figure(figsize=(4.8, 3.2))
    x = np.arange(len(agents))
    if last is None:
        ax.bar(x, core.values()[market], 0.6, label="value", color="#4c72b0")
        ax.set_title(f"{name}  round 0/{c.rounds}", fontsize=9)
    else:
        w = 0.4
        ax.bar(x - w / 2, last["value"][market], w, label="value", color="#4c72b0")
        ax.bar(x + w / 2, last["bid"][market], w, label="bid / ask", color="#dd8452")
        price = float(last["clearing_price"][market])
        if not np.isnan(price):
            ax.axhline(price, color="#c44e52", lw=1.5, label="clearing price")
        round_no = int(last["round"][market]) + 1
        ax.set_title(f"{name}  round {round_no}/{c.rounds}", fontsize=9)
    ax.set_xticks(x, agents, fontsize=7, rotation=45 if len(agents) > 6 else 0)
    ax.set_ylim(0.0, core.spec.max_bid * 1.05)
    ax.set_ylabel("per unit", fontsize=8)
    ax.legend(fontsize=7, loc="upper right")
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def parallel_env(**options: Any) -> MarketParallelEnv:
    """The parallel env; keyword options as in the module docstring."""
    return MarketParallelEnv(**options)


def raw_env(**options: Any) -> parallel_to_aec_wrapper:
    """The AEC env, unwrapped: agents act in turn, the round clears after the last."""
    return parallel_to_aec_wrapper(MarketParallelEnv(**options))


def env(**options: Any) -> wrappers.OrderEnforcingWrapper:
    """The AEC env with PettingZoo's order-enforcing wrapper."""
    return wrappers.OrderEnforcingWrapper(raw_env(**options))
