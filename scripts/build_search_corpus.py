"""Deterministic generator of the search-day traffic corpus (queries and ads).

Run ``python scripts/build_search_corpus.py`` from the repository to regenerate
``queries.jsonl``, ``ads.jsonl`` and ``README.md`` in
``attn_env/scenarios/data/search_day/`` (``--out DIR`` writes them elsewhere;
``--check`` writes nothing and fails when the shipped files differ from what
the generator gives). The texts are composed from the templates and slot
fillers of ``scripts/search_vocabulary.json`` (eight verticals, the same as the
shipped bank corpus, plus templates shared by all of them) by one seeded
generator, so the same bytes come out every time. Every output is verified
before anything is written (counts per vertical, well-formed unique ids, texts
unique after case and whitespace normalisation within each file, no query
equal to an ad, short texts, total size); a failed check raises and writes
nothing. Everything here was written for attn-market and is released under CC0.
"""

from __future__ import annotations

import argparse
import json
import re
import string
import sys
import textwrap
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.fileio import atomic_write_text

SEED = 20261127
QUERIES_PER_VERTICAL = 250
ADS_PER_VERTICAL = 1250
MAX_WORDS = 24
"Longest text in whitespace words (MiniLM cuts ads at 40 word pieces)."
MAX_TOTAL_BYTES = 2_000_000
"Size cap of queries.jsonl and ads.jsonl together."
HERE = Path(__file__).resolve().parent
VOCABULARY = HERE / "search_vocabulary.json"
SHIPPED = HERE.parent / "attn_env" / "scenarios" / "data" / "search_day"
TEMPLATE_KEYS = ("query", "ad")
"Keys that hold templates; every other key of a vertical or of ``shared`` is a slot."
FILES = ("queries.jsonl", "ads.jsonl", "README.md")
"The files the builder writes, in this order."
ID_FORMATS = {
    "queries.jsonl": ("sq", 4, re.compile(r"sq-([a-z_]+)-(\d{4})")),
    "ads.jsonl": ("ad", 5, re.compile(r"ad-([a-z_]+)-(\d{5})")),
}
"Per file: id prefix, digits of the row number, and the pattern ids must match."

Vocabulary = dict[str, Any]


class CorpusCheckError(RuntimeError):
    """The generated corpus fails one of its own checks (nothing is written)."""


def normalise(text: str) -> str:
    """The form texts are deduplicated by: casefolded, whitespace collapsed."""
    return " ".join(text.casefold().split())


def slot_names(template: str) -> list[str]:
    """The slots of a template, in order of appearance (``{a} {b}`` -> a, b)."""
    return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]


def _base(slot: str, lists: dict[str, list[str]]) -> str:
    """The list a slot draws from: itself, or ``x`` for ``x2`` (a second value)."""
    if slot in lists:
        return slot
    if slot.endswith("2") and slot[:-1] in lists:
        return slot[:-1]
    raise KeyError(slot)


def load_vocabulary(path: Path = VOCABULARY) -> Vocabulary:
    """Read and check the vocabulary file.

    Args:
        path: a JSON file ``{"shared": {key: [str]}, "verticals": {name: {key:
            [str]}}}``; every vertical needs ``query`` and ``ad`` templates, and
            every slot of a template must name a list of the vertical or of
            ``shared`` (``x2`` a list ``x`` of at least two values).

    Returns:
        The parsed file (key order drives the seeded draws).

    Raises:
        CorpusCheckError: naming the vertical, template and slot at fault.
    """
    vocab: Vocabulary = json.loads(path.read_text(encoding="utf-8"))
    shared = vocab.get("shared", {})
    for name, vert in vocab["verticals"].items():
        lists = _lists(shared, vert)
        for key in TEMPLATE_KEYS:
            if not vert.get(key):
                raise CorpusCheckError(f"{path}: vertical {name!r} has no {key!r}")
            for template in (*vert[key], *shared.get(key, ())):
                for slot in slot_names(template):
                    try:
                        base = _base(slot, lists)
                    except KeyError:
                        raise CorpusCheckError(
                            f"{path}: vertical {name!r}, template {template!r}: "
                            f"slot {{{slot}}} has no list"
                        ) from None
                    if len(set(lists[base])) < (2 if base != slot else 1):
                        raise CorpusCheckError(
                            f"{path}: vertical {name!r}: {{{slot}}} needs two "
                            f"distinct {base!r} values"
                        )
    return vocab


def _lists(shared: dict[str, list[str]], vert: dict[str, list[str]]) -> dict:
    """The slot lists of one vertical: ``shared``'s, overridden by its own."""
    merged = {k: v for k, v in shared.items() if k not in TEMPLATE_KEYS}
    merged.update({k: v for k, v in vert.items() if k not in TEMPLATE_KEYS})
    return merged


def _fill(template: str, lists: dict[str, list[str]], rng: np.random.Generator) -> str:
    """Fill each slot of ``template`` by a seeded draw; ``x2`` differs from ``x``."""
    values: dict[str, str] = {}
    for slot in slot_names(template):
        if slot in values:
            continue
        base = _base(slot, lists)
        twin = base + "2" if slot == base else base  # the slot it must differ from
        options = [o for o in lists[base] if o != values.get(twin)]
        values[slot] = options[int(rng.integers(len(options)))]
    return template.format(**values)


_SENTENCE_START = re.compile(r"(?:^|(?<=[.?!] ))[a-z]")
"A lower-case letter that starts a sentence (capitalised in ads)."


def _compose(
    templates: list[str],
    lists: dict[str, list[str]],
    count: int,
    rng: np.random.Generator,
    taken: set[str],
    capitalise: bool,
) -> list[tuple[str, int]]:
    """``count`` texts new to ``taken`` (normalised), each with its template index.

    Templates are drawn uniformly (seeded); a text whose normalised form is in
    ``taken`` is drawn again. ``taken`` is updated.
    """
    out: list[tuple[str, int]] = []
    tries = 0
    while len(out) < count:
        tries += 1
        if tries > 200 * count:
            raise CorpusCheckError(
                f"could not compose {count} distinct texts from {len(templates)} "
                f"templates (got {len(out)}): add templates or fillers"
            )
        t = int(rng.integers(len(templates)))
        text = _fill(templates[t], lists, rng)
        if capitalise:
            text = _SENTENCE_START.sub(lambda m: m.group(0).upper(), text)
        key = normalise(text)
        if key in taken:
            continue
        taken.add(key)
        out.append((text, t))
    return out


def generate(vocab: Vocabulary | None = None, seed: int = SEED) -> dict[str, bytes]:
    """The corpus files' bytes, generated and verified in memory.

    Args:
        vocab: the vocabulary (default: :data:`VOCABULARY`, read and checked).
        seed: the generator's seed.

    Returns:
        ``{"queries.jsonl": ..., "ads.jsonl": ..., "README.md": ...}``.

    Raises:
        CorpusCheckError: when the output fails a check (:func:`verify`).
    """
    vocab = load_vocabulary() if vocab is None else vocab
    rng = np.random.default_rng(seed)
    shared = vocab.get("shared", {})
    rows: dict[str, list[dict[str, str]]] = {"queries.jsonl": [], "ads.jsonl": []}
    used: dict[str, Counter] = {"query": Counter(), "ad": Counter()}
    query_keys: set[str] = set()
    ad_keys: set[str] = set()
    for vertical, vert in vocab["verticals"].items():
        lists = _lists(shared, vert)
        for key, name, count, taken, cap in (
            ("query", "queries.jsonl", QUERIES_PER_VERTICAL, query_keys, False),
            ("ad", "ads.jsonl", ADS_PER_VERTICAL, ad_keys, True),
        ):
            templates = [*vert[key], *shared.get(key, ())]
            if key == "ad":  # no ad may equal any query (all queries come first)
                taken |= query_keys
            prefix, digits, _ = ID_FORMATS[name]
            for k, (text, t) in enumerate(
                _compose(templates, lists, count, rng, taken, cap)
            ):
                rows[name].append(
                    {
                        "id": f"{prefix}-{vertical}-{k:0{digits}d}",
                        "text": text,
                        "vertical": vertical,
                    }
                )
                used[key][(vertical, t)] += 1
    files = {
        name: "".join(json.dumps(r) + "\n" for r in rs).encode()
        for name, rs in rows.items()
    }
    stats = verify(files, list(vocab["verticals"]))
    files["README.md"] = _readme(vocab, stats, used, seed).encode()
    return files


def _rows(name: str, data: bytes) -> list[dict[str, str]]:
    """Rows of one JSONL file's bytes."""
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def verify(files: dict[str, bytes], verticals: list[str]) -> dict[str, Any]:
    """Check the two JSONL files; raise :class:`CorpusCheckError` at the first fault.

    Checks: every vertical has exactly its quota of rows; ids unique, of the
    form ``sq-<vertical>-0000`` / ``ad-<vertical>-00000`` numbered from 0 per
    vertical and naming the row's vertical; texts non-empty, at most
    :data:`MAX_WORDS` words, with no unfilled slot, unique after
    :func:`normalise` within each file; no query text equal to an ad text; both
    files together under :data:`MAX_TOTAL_BYTES`.

    Returns:
        Counts per vertical and file, and the longest text in words.
    """
    quota = {"queries.jsonl": QUERIES_PER_VERTICAL, "ads.jsonl": ADS_PER_VERTICAL}
    stats: dict[str, Any] = {"counts": {}, "max_words": 0}
    keys: dict[str, set[str]] = {}
    for name in ("queries.jsonl", "ads.jsonl"):
        rows = _rows(name, files[name])
        _, digits, pattern = ID_FORMATS[name]
        counts: Counter = Counter()
        seen_ids: set[str] = set()
        seen: dict[str, str] = {}
        for row in rows:
            rid, text, vert = row["id"], row["text"], row["vertical"]
            m = pattern.fullmatch(rid)
            if m is None or m.group(1) != vert or int(m.group(2)) != counts[vert]:
                raise CorpusCheckError(
                    f"{name}: id {rid!r} is not {ID_FORMATS[name][0]}-{vert}-"
                    f"{counts[vert]:0{digits}d}"
                )
            if rid in seen_ids:
                raise CorpusCheckError(f"{name}: duplicate id {rid!r}")
            seen_ids.add(rid)
            counts[vert] += 1
            n_words = len(text.split())
            if not text.strip() or n_words > MAX_WORDS or "{" in text or "}" in text:
                raise CorpusCheckError(
                    f"{name}: {rid}: text {text!r} is empty, longer than "
                    f"{MAX_WORDS} words or has an unfilled slot"
                )
            stats["max_words"] = max(stats["max_words"], n_words)
            key = normalise(text)
            if key in seen:
                raise CorpusCheckError(
                    f"{name}: {rid} repeats the text of {seen[key]}: {text!r}"
                )
            seen[key] = rid
        if set(counts) != set(verticals) or any(
            counts[v] != quota[name] for v in verticals
        ):
            raise CorpusCheckError(
                f"{name}: rows per vertical {dict(counts)}, expected "
                f"{quota[name]} for each of {verticals}"
            )
        stats["counts"][name] = dict(counts)
        keys[name] = set(seen)
    both = keys["queries.jsonl"] & keys["ads.jsonl"]
    if both:
        raise CorpusCheckError(f"query texts equal to ad texts: {sorted(both)[:3]}")
    size = len(files["queries.jsonl"]) + len(files["ads.jsonl"])
    if size > MAX_TOTAL_BYTES:
        raise CorpusCheckError(
            f"the two files take {size} bytes, over {MAX_TOTAL_BYTES}"
        )
    stats["bytes"] = size
    return stats


def _readme(
    vocab: Vocabulary, stats: dict[str, Any], used: dict[str, Counter], seed: int
) -> str:
    """The folder's README: what, counts, how made, variety, licence, format."""
    shared = vocab.get("shared", {})
    verts = vocab["verticals"]
    n_templates = {
        key: sum(len(v[key]) for v in verts.values()) + len(shared.get(key, ()))
        for key in TEMPLATE_KEYS
    }
    fillers = {
        (scope, k, x)
        for scope, lists in (("shared", shared), *verts.items())
        for k, xs in lists.items()
        if k not in TEMPLATE_KEYS
        for x in xs
    }
    n_lists = sum(
        1
        for lists in (shared, *verts.values())
        for k in lists
        if k not in TEMPLATE_KEYS
    )
    q_counts, a_counts = (stats["counts"][n] for n in ("queries.jsonl", "ads.jsonl"))
    table = "\n".join(f"| {v} | {q_counts[v]} | {a_counts[v]} |" for v in verts)
    quota = {"query": QUERIES_PER_VERTICAL, "ad": ADS_PER_VERTICAL}
    share = {k: max(c.values()) / quota[k] for k, c in used.items()}
    n_used = sum(
        len(
            {
                (v, t) if t < len(verts[v][key]) else ("shared", t - len(verts[v][key]))
                for v, t in c
            }
        )
        for key, c in used.items()
    )
    variety = textwrap.fill(
        f"Running it twice gives identical bytes. Variety: {n_templates['query']} "
        f"query templates and {n_templates['ad']} ad templates "
        f"({len(shared.get('query', ()))} and {len(shared.get('ad', ()))} of them "
        f"shared by all verticals, the rest written per vertical), filled from "
        f"{n_lists} slot lists holding {len(fillers)} slot fillers (products, "
        f"brands, attributes, audiences, benefits, prices, places, ...). "
        f"{n_used} of the {sum(n_templates.values())} templates are used; no "
        f"template makes more than {100 * share['query']:.1f} % of a vertical's "
        f"queries or {100 * share['ad']:.1f} % of its ads. A text is at most "
        f"{stats['max_words']} words (limit {MAX_WORDS}). Any resemblance of an "
        "invented brand to a real one is accidental.",
        width=79,
    )
    return f"""# Search-day traffic corpus

The traffic of the `search_day` scenario (a day of sponsored search): search
queries (`queries.jsonl`) and sponsored-search ads (`ads.jsonl`) over the
eight verticals of the shipped bank corpus. The attention bank of this corpus
(queries x ads) ships prebuilt in `attn_env/valuations/prebuilt/`
(`attn_env.valuations.shipped_banks.search_day_bank()`).

| vertical | queries | ads |
|---|---:|---:|
{table}
| **total** | **{sum(q_counts.values())}** | **{sum(a_counts.values())}** |

## Row format

One JSON object a line (UTF-8), the format of every attn-market corpus:

    {{"id": "sq-shoes-0000", "text": "...", "vertical": "shoes"}}
    {{"id": "ad-shoes-00000", "text": "...", "vertical": "shoes"}}

Ids are `sq-<vertical>-NNNN` (queries) and `ad-<vertical>-NNNNN` (ads), numbered
from 0 within each vertical. Read the folder as a corpus with
`attn_env.valuations.corpus_io.load_corpus(search_day_corpus_dir(),
candidates="ads.jsonl")`.

## How it was made

Written for attn-market, nothing downloaded: hand-written templates and slot
fillers with invented brand names, in `scripts/search_vocabulary.json`,
composed by the deterministic builder (seed {seed}):

    python scripts/build_search_corpus.py          # writes this folder
    python scripts/build_search_corpus.py --check  # fails if it differs

{variety}

Deduplication: a text is kept only if its normalised form (casefolded,
whitespace collapsed) is new in its file, across all verticals; an ad is also
refused when it equals a query. The builder checks its own output (rows per
vertical, id format and uniqueness, normalised uniqueness, no query equal to
an ad, text length, both files together under {MAX_TOTAL_BYTES // 10**6} MB:
{stats["bytes"]} bytes) and writes nothing when a check fails.

## Licence

CC0-1.0 (CC0 1.0 Universal, public domain dedication): written for
attn-market, no rights reserved. You may copy, modify and use these texts for
any purpose without asking. https://creativecommons.org/publicdomain/zero/1.0/
"""


def write(out_dir: Path, files: dict[str, bytes]) -> None:
    """Write the generated files into ``out_dir`` (created if missing)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        atomic_write_text(out_dir / name, files[name].decode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    """Command line: regenerate (or ``--check``) the search-day corpus."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=SHIPPED, help=f"output folder (default {SHIPPED})"
    )
    parser.add_argument(
        "--vocabulary", type=Path, default=VOCABULARY, help="vocabulary JSON file"
    )
    parser.add_argument("--seed", type=int, default=SEED, help="generator seed")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; fail if --out differs"
    )
    args = parser.parse_args(argv)
    files = generate(load_vocabulary(args.vocabulary), args.seed)
    if args.check:
        stale = [
            n
            for n in FILES
            if not (args.out / n).is_file() or (args.out / n).read_bytes() != files[n]
        ]
        if stale:
            print(f"{args.out}: stale {', '.join(stale)}", file=sys.stderr)
            return 1
        print(f"{args.out}: up to date")
        return 0
    write(args.out, files)
    n_q, n_a = (files[n].count(b"\n") for n in ("queries.jsonl", "ads.jsonl"))
    print(f"wrote {n_q} queries and {n_a} ads to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
