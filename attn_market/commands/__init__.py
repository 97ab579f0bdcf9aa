"""Command groups of ``attn-market``; each module's ``register(subparsers)`` adds its
parsers and sets ``func`` (``argparse.Namespace -> exit code``)."""
