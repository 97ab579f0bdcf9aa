"""Market integrity: collusion index, attack and shill detectors, fairness.

Sits between the solver and the agents: it reads market outcomes (bids,
prices, draws) and may import the layers below it, never ``agents`` or
``runner``. Attack agents live in ``agents/``, the experiments that run
attacks against the clean market in ``runner/``.
"""
