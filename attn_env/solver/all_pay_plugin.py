"""Plug-in: the all-pay auction by name, for configs.

All-pay is not a built-in mechanism (losers pay, so the individual
rationality every built-in keeps ex post does not hold); this module
registers :class:`attn_env.solver.formats.AllPay` as ``all_pay`` when a
config names it::

    plugins: [attn_env.solver.all_pay_plugin]
    env: {mechanism: all_pay, n_buyers: 3}

Importing it again (or after a user's own ``all_pay``) registers nothing.
"""

from __future__ import annotations

from attn_env import mechanisms
from attn_env.solver.formats import AllPay

if "all_pay" not in mechanisms.names():
    mechanisms.register("all_pay", AllPay)
