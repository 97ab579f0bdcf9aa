"""Reading a corpus: the shipped one or a user's folder of two JSONL files.

A corpus folder holds ``queries.jsonl`` and ``candidates.jsonl`` (or another
candidates file named by the caller, as the search-day corpus's ``ads.jsonl``),
one JSON object a line: ``{"id": ..., "text": ..., "vertical": ...}``. Reading is kept
apart from the bank so that the corpus format and its checks live in one place,
and so that the content hash (part of every bank key) is computed the same way
by everyone who reads a corpus.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from attn_env.errors import UserError
from attn_env.fileio import nesting_over, read_user_bytes, strict_json_loads

__all__ = ["Corpus", "load_corpus", "search_day_corpus_dir", "shipped_corpus_dir"]

CORPUS_FILES = ("queries.jsonl", "candidates.jsonl")
"The two files of a corpus folder, in the order they enter the content hash."
ROW_KEYS = ("id", "text", "vertical")
"The keys every row must hold, each a non-empty string."
MAX_CORPUS_BYTES = 64 * 2**20
"Size cap of one corpus file (the shipped candidates.jsonl is 0.4 MB)."
MAX_ROW_NESTING = 8
"Deepest JSON nesting of one row (a row is a flat object)."


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


def search_day_corpus_dir() -> Path:
    """The folder of the search-day traffic corpus that ships with the package.

    Returns:
        ``attn_env/scenarios/data/search_day`` inside the installed package:
        ``queries.jsonl`` and ``ads.jsonl`` (read it with
        ``load_corpus(search_day_corpus_dir(), candidates="ads.jsonl")``).
    """
    return Path(__file__).resolve().parents[1] / "scenarios" / "data" / "search_day"


def _parse_jsonl(path: Path, data: bytes) -> list[dict[str, str]]:
    """Parse and check the rows of one corpus file's bytes.

    Args:
        path: the file the bytes came from (named in every message).
        data: its bytes: UTF-8 JSONL of ``{"id", "text", "vertical"}`` rows.

    Returns:
        The rows in file order (blank lines skipped).

    Raises:
        UserError: naming the file and line of a row that is not UTF-8 or
            valid JSON (NaN, Infinity and deep nesting refused), is not an
            object, lacks a non-empty string key, or repeats an id; or when
            the file has no rows.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        lineno = data[: err.start].count(b"\n") + 1
        raise UserError(f"{path}:{lineno}: not UTF-8 text ({err.reason})") from None
    rows = []
    seen: set[str] = set()
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        row = _parse_row(path, lineno, line)
        for key in ROW_KEYS:
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise UserError(
                    f"{path}:{lineno}: expected a non-empty string {key!r}, "
                    f"got {_short(row.get(key))}"
                )
        if row["id"] in seen:
            raise UserError(f"{path}:{lineno}: duplicate id {row['id']!r}")
        seen.add(row["id"])
        rows.append(row)
    if not rows:
        raise UserError(f"{path}: no rows")
    return rows


def _parse_row(path: Path, lineno: int, line: str) -> dict:
    """One JSONL line as an object; ``UserError`` naming the file and line if not."""
    if nesting_over(line, MAX_ROW_NESTING) is not None:
        raise UserError(
            f"{path}:{lineno}: nests deeper than {MAX_ROW_NESTING} levels; "
            "expected a flat object"
        )
    try:
        row = strict_json_loads(line)
    except (ValueError, RecursionError) as err:
        msg = getattr(err, "msg", None) or " ".join(str(err).split())[:120]
        raise UserError(f"{path}:{lineno}: not valid JSON ({msg})") from None
    if not isinstance(row, dict):
        raise UserError(
            f'{path}:{lineno}: expected an object {{"id", "text", '
            f'"vertical"}}, got {type(row).__name__}'
        )
    return row


def _short(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a message stays one line)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_corpus(
    path: str | Path | None = None, *, candidates: str = CORPUS_FILES[1]
) -> Corpus:
    """Read ``queries.jsonl`` and the candidates file from a folder.

    Both files are read with limits (:func:`attn_env.fileio.read_user_bytes`:
    regular files inside the folder, at most :data:`MAX_CORPUS_BYTES` each),
    and the content hash is taken from the very bytes that are parsed.

    Args:
        path: a folder with both files (JSONL rows ``{"id", "text", "vertical"}``);
            default: the shipped corpus.
        candidates: the file name of the candidates in that folder (a plain
            name, no folder part); default ``candidates.jsonl``.

    Returns:
        The corpus, with the content hash of both files.

    Raises:
        FileNotFoundError: when the folder or either file is missing.
        UserError: when ``candidates`` is not a plain file name, a file is not
            a regular file, too large, or a row is malformed (see
            :func:`_parse_jsonl`).
    """
    if (
        not isinstance(candidates, str)
        or candidates in ("", ".", "..")
        or Path(candidates).name != candidates
        or "\\" in candidates
    ):
        raise UserError(
            f"candidates must be a file name inside the corpus folder, such as "
            f"'candidates.jsonl', got {_short(candidates)}"
        )
    names = (CORPUS_FILES[0], candidates)
    folder = Path(path).expanduser() if path is not None else shipped_corpus_dir()
    if folder.exists() and not folder.is_dir():
        raise UserError(
            f"{folder}: a corpus is a folder holding queries.jsonl and "
            f"{candidates}, this is not one"
        )
    files = [folder / name for name in names]
    for f in files:
        if not f.exists() and not f.is_symlink():
            raise FileNotFoundError(
                f"corpus file {str(f)!r} does not exist; a corpus folder holds "
                f"queries.jsonl and {candidates}"
            )
    data = [
        read_user_bytes(f, "corpus file", MAX_CORPUS_BYTES, inside=folder)
        for f in files
    ]
    digest = hashlib.sha256()
    for chunk in data:
        digest.update(chunk)
    queries, cands = (_parse_jsonl(f, b) for f, b in zip(files, data, strict=True))
    return Corpus(
        query_ids=[r["id"] for r in queries],
        query_texts=[r["text"] for r in queries],
        query_verticals=[r["vertical"] for r in queries],
        cand_ids=[r["id"] for r in cands],
        cand_texts=[r["text"] for r in cands],
        cand_verticals=[r["vertical"] for r in cands],
        content_hash=digest.hexdigest(),
    )
