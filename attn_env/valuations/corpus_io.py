"""Reading a corpus: the shipped one or a user's folder of two JSONL files.

A corpus folder holds ``queries.jsonl`` and ``candidates.jsonl``, one JSON
object a line: ``{"id": ..., "text": ..., "vertical": ...}``. Reading is kept
apart from the bank so that the corpus format and its checks live in one place,
and so that the content hash (part of every bank key) is computed the same way
by everyone who reads a corpus.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Corpus", "load_corpus", "shipped_corpus_dir"]

CORPUS_FILES = ("queries.jsonl", "candidates.jsonl")
"The two files of a corpus folder, in the order they enter the content hash."
ROW_KEYS = ("id", "text", "vertical")
"The keys every row must hold, each a non-empty string."


@dataclass(frozen=True)
class Corpus:
    """Queries and candidate texts, each with a vertical (topic label)."""

    query_ids: list[str]
    query_texts: list[str]
    query_verticals: list[str]
    cand_ids: list[str]
    cand_texts: list[str]
    cand_verticals: list[str]
    content_hash: str
    "SHA-256 of the bytes of both files (queries first): part of the bank key."


def shipped_corpus_dir() -> Path:
    """The folder of the corpus that ships with the package.

    Returns:
        ``attn_env/valuations/corpus`` inside the installed package.
    """
    return Path(__file__).resolve().parent / "corpus"


def _read_jsonl(path: Path) -> list[dict[str, str]]:
    """Read and check the rows of one corpus file.

    Args:
        path: a JSONL file of ``{"id", "text", "vertical"}`` rows.

    Returns:
        The rows in file order (blank lines skipped).

    Raises:
        ValueError: naming the file and line of a row that is not valid JSON,
            lacks a non-empty string key, or repeats an id; or when the file
            has no rows.
    """
    rows = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}:{lineno}: not valid JSON ({err.msg})"
                ) from err
            for key in ROW_KEYS:
                if not isinstance(row.get(key), str) or not row[key].strip():
                    raise ValueError(
                        f"{path}:{lineno}: expected a non-empty string {key!r}, "
                        f"got {row.get(key)!r}"
                    )
            if row["id"] in seen:
                raise ValueError(f"{path}:{lineno}: duplicate id {row['id']!r}")
            seen.add(row["id"])
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no rows")
    return rows


def load_corpus(path: str | Path | None = None) -> Corpus:
    """Read ``queries.jsonl`` and ``candidates.jsonl`` from a folder.

    Args:
        path: a folder with both files (JSONL rows ``{"id", "text", "vertical"}``);
            default: the shipped corpus.

    Returns:
        The corpus, with the content hash of both files.

    Raises:
        FileNotFoundError: when either file is missing.
        ValueError: when a row is malformed (see :func:`_read_jsonl`).
    """
    folder = Path(path).expanduser() if path is not None else shipped_corpus_dir()
    files = [folder / name for name in CORPUS_FILES]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(
                f"corpus file {str(f)!r} does not exist; a corpus folder holds "
                "queries.jsonl and candidates.jsonl"
            )
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.read_bytes())
    queries, cands = (_read_jsonl(f) for f in files)
    return Corpus(
        query_ids=[r["id"] for r in queries],
        query_texts=[r["text"] for r in queries],
        query_verticals=[r["vertical"] for r in queries],
        cand_ids=[r["id"] for r in cands],
        cand_texts=[r["text"] for r in cands],
        cand_verticals=[r["vertical"] for r in cands],
        content_hash=digest.hexdigest(),
    )
