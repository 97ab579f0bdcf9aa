"""The ``attn-market`` command line: the top layer, above the experiment runner.

``attn_market.cli.main`` is the console script; each command group lives in
``attn_market.commands`` and registers its parsers there.
"""
