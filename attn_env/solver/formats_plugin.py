"""Plug-in: the all-pay auction and the war of attrition by name, for configs.

Neither is a built-in mechanism (losers pay, so the individual rationality
every built-in keeps ex post does not hold); this module registers
:class:`attn_env.solver.formats.AllPay` as ``all_pay`` and
:class:`attn_env.solver.formats.WarOfAttrition` as ``war_of_attrition``::

    plugins: [attn_env.solver.formats_plugin]
    env: {mechanism: all_pay, n_buyers: 3}

A name already registered (importing it again, or a user's own) is left as
it is.
"""

from __future__ import annotations

from attn_env import mechanisms
from attn_env.solver.formats import AllPay, WarOfAttrition

for _name, _cls in (("all_pay", AllPay), ("war_of_attrition", WarOfAttrition)):
    if _name not in mechanisms.names():
        mechanisms.register(_name, _cls)
