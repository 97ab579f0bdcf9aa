"""The experiment runner: plays configs and measures them.

- :func:`runner.simulate.play`: fixed agents (and trained policies) in a market,
  reduced to market metrics (``attn-market simulate``).
- :func:`runner.evaluate.evaluate`: a trained run against theory and in its
  market (``attn-market evaluate``).
- :func:`runner.seats.build_agents`: a config's agents by name, including
  ``kind: policy`` (a trained run folder).

The runner sits above ``attn_env``, ``agents`` and ``training`` and below the
command line (``attn_market``); nothing under it imports it.
"""
