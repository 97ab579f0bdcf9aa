"""Deterministic generator of the shipped corpus (queries and candidate ads).

Run ``python scripts/build_corpus.py`` from the repository to regenerate
``queries.jsonl`` and ``candidates.jsonl`` in ``attn_env/valuations/corpus/``
(``--out DIR`` writes them elsewhere, e.g. to diff against the shipped files).
The texts are composed from the templates, products, invented brands and
attributes of ``scripts/corpus_vocabulary.json`` (eight verticals) by one
seeded generator: the same files come out every time. The generator lives
outside the installed package because only maintainers run it; users get the
generated files. Everything here was written for attn-market and is released
under CC0 (see ``attn_env/valuations/corpus/README.md``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from attn_env.fileio import atomic_write_text

SEED = 20261126
QUERIES_PER_VERTICAL = 40
CANDIDATES_PER_VERTICAL = 375
HERE = Path(__file__).resolve().parent
VOCABULARY = HERE / "corpus_vocabulary.json"
SHIPPED = HERE.parent / "attn_env" / "valuations" / "corpus"
TEMPLATE_KEYS = ("query", "ad")
"Keys of a vertical that hold templates; every other key is a slot's vocabulary."

Vocabulary = dict[str, dict[str, list[str]]]


def load_vocabulary(path: Path = VOCABULARY) -> Vocabulary:
    """Read the verticals of a vocabulary file, in file order.

    Args:
        path: a JSON file ``{"verticals": {name: {key: [str, ...]}}}``; each
            vertical needs ``query`` and ``ad`` templates and at least two
            ``attr`` values (``{attr2}`` differs from ``{attr}``).

    Returns:
        The verticals (their order and key order drive the seeded draws).

    Raises:
        ValueError: naming the vertical and key that is missing or too short.
    """
    verticals: Vocabulary = json.loads(path.read_text(encoding="utf-8"))["verticals"]
    for name, vocab in verticals.items():
        for key, least in (*((k, 1) for k in TEMPLATE_KEYS), ("attr", 2)):
            if len(vocab.get(key, ())) < least:
                raise ValueError(
                    f"{path}: vertical {name!r} needs at least {least} {key!r} entries"
                )
    return verticals


def _fill(template: str, vocab: dict[str, list[str]], rng: np.random.Generator) -> str:
    """Fill a template's slots with draws from the vertical's vocabulary."""
    values = {
        key: vocab[key][rng.integers(len(vocab[key]))]
        for key in vocab
        if key not in TEMPLATE_KEYS
    }
    attrs = vocab["attr"]
    values["attr2"] = attrs[
        (attrs.index(values["attr"]) + 1 + rng.integers(len(attrs) - 1)) % len(attrs)
    ]
    values["num"] = str(
        int(rng.choice([10, 15, 20, 25, 30, 40, 50, 100, 200, 500, 800]))
    )
    text = template.format(**values)
    return text[0].upper() + text[1:]


def _unique_texts(
    templates: list[str],
    vocab: dict[str, list[str]],
    count: int,
    rng: np.random.Generator,
) -> list[str]:
    """``count`` distinct texts, cycling over templates in a seeded order."""
    out: list[str] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 100 * count:
            raise RuntimeError(f"could not compose {count} distinct texts")
        text = _fill(templates[rng.integers(len(templates))], vocab, rng)
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def build(out_dir: Path, verticals: Vocabulary, seed: int = SEED) -> tuple[int, int]:
    """Write ``queries.jsonl`` and ``candidates.jsonl`` to ``out_dir``.

    Args:
        out_dir: the folder to write (created if missing).
        verticals: the vocabulary (see :func:`load_vocabulary`).
        seed: the generator's seed.

    Returns:
        The numbers of queries and candidates written.
    """
    rng = np.random.default_rng(seed)
    queries, candidates = [], []
    for vertical, vocab in verticals.items():
        for k, text in enumerate(
            _unique_texts(vocab["query"], vocab, QUERIES_PER_VERTICAL, rng)
        ):
            queries.append(
                {"id": f"q-{vertical}-{k:03d}", "text": text, "vertical": vertical}
            )
        for k, text in enumerate(
            _unique_texts(vocab["ad"], vocab, CANDIDATES_PER_VERTICAL, rng)
        ):
            candidates.append(
                {"id": f"c-{vertical}-{k:04d}", "text": text, "vertical": vertical}
            )
    for name, rows in (("queries.jsonl", queries), ("candidates.jsonl", candidates)):
        atomic_write_text(out_dir / name, "".join(json.dumps(r) + "\n" for r in rows))
    return len(queries), len(candidates)


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate the corpus (``--help`` for the options)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=SHIPPED, help=f"output folder (default {SHIPPED})"
    )
    parser.add_argument(
        "--vocabulary", type=Path, default=VOCABULARY, help="vocabulary JSON file"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="generator seed")
    args = parser.parse_args(argv)
    n_q, n_c = build(args.out, load_vocabulary(args.vocabulary), args.seed)
    print(f"wrote {n_q} queries and {n_c} candidates to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
