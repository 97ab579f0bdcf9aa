"""Opening a bank folder a user may have handed in: every file and field checked.

A bank named by ``bank_path`` (or found in a shared cache) is input like any
other: its ``manifest.json`` may be a list, an array may be 1-D, complex, full
of NaN or of another shape than its neighbours, and any file may be a fifo or
a symlink out of the folder. Each of those ends here in one
:class:`~attn_env.errors.UserError` line naming the file and the field, before
any of it reaches a draw. Files are checked with
:func:`attn_env.fileio.check_user_file` (regular file, inside the bank folder,
size cap) before ``np.load`` opens them (``allow_pickle=False``, memory-mapped).

The expected layout is the table of :mod:`attn_env.valuations.bank`:
``Q`` queries, ``C`` candidates per query, ``P`` page layouts and ``Kmax``
slots, shared by every array.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from attn_env.checks import is_real
from attn_env.errors import UserError
from attn_env.fileio import check_user_file, read_user_json

__all__ = [
    "ARRAY_LAYOUT",
    "MAX_ARRAY_BYTES",
    "MAX_MANIFEST_BYTES",
    "check_arrays",
    "open_array",
    "read_manifest",
]

MAX_MANIFEST_BYTES = 1 << 20
"Size cap of a bank's ``manifest.json`` (a built one is under 2 kB)."
MAX_ARRAY_BYTES = 1 << 31
"Size cap of one ``.npy`` array of a bank (the largest shipped config's is 1 MB)."

ARRAY_LAYOUT: dict[str, tuple[str, tuple[str, ...]]] = {
    "queries": ("int", ("Q",)),
    "candidates": ("int", ("Q", "C")),
    "own": ("bool", ("Q", "C")),
    "relevance_raw": ("float", ("Q", "C")),
    "page_candidates": ("int", ("Q", "P", "Kmax")),
    "alpha": ("float", ("Q", "P", "Kmax", "Kmax")),
}
"Each array's kind of dtype and its named axes (equal names: equal lengths)."
_KIND_CODES = {"int": "iu", "bool": "b", "float": "f"}
_KIND_WORDS = {
    "int": "integers",
    "bool": "booleans",
    "float": "real floats (float16, float32 or float64)",
}
_STRINGS = ("key", "model", "corpus_hash", "device", "dtype", "created")
_COUNTS = ("sequences", "pairs", "pages")
_SECONDS = ("seconds", "pair_seconds", "page_seconds")
ALPHA_SUM_TOL = 1e-3
"How far a page's alpha may sum from 1 (float32 sums of up to Kmax shares)."


def read_manifest(folder: Path, format_version: int) -> dict[str, Any]:
    """The checked ``manifest.json`` of a bank folder.

    ``format`` must equal ``format_version``; the other fields a build writes
    are optional (a hand-made bank may leave them out) but checked for type
    and range when present.

    Raises:
        FileNotFoundError: no ``manifest.json``.
        UserError: one line naming the file and the bad field.
    """
    file = folder / "manifest.json"
    doc = read_user_json(file, "bank manifest", MAX_MANIFEST_BYTES, inside=folder)
    if not isinstance(doc, dict):
        raise UserError(
            f"{file}: expected a JSON object, got {type(doc).__name__}; rebuild it"
        )
    fmt = doc.get("format")
    if type(fmt) is not int or fmt != format_version:
        raise UserError(
            f"{file}: field 'format' must be {format_version}, got {fmt!r}; "
            "rebuild the bank"
        )
    for name in _STRINGS:
        if name in doc and not isinstance(doc[name], str):
            raise UserError(
                f"{file}: field {name!r} must be a string, got {doc[name]!r}"
            )
    if "settings" in doc and not isinstance(doc["settings"], dict):
        raise UserError(
            f"{file}: field 'settings' must be an object, got {doc['settings']!r}"
        )
    for name in _COUNTS:
        if name in doc and not (type(doc[name]) is int and doc[name] >= 0):
            raise UserError(
                f"{file}: field {name!r} must be an integer >= 0, got {doc[name]!r}"
            )
    for name in _SECONDS:
        if name in doc and not (is_real(doc[name]) and doc[name] >= 0):
            raise UserError(
                f"{file}: field {name!r} must be a number >= 0, got {doc[name]!r}"
            )
    return doc


def open_array(folder: Path, name: str) -> np.ndarray:
    """``<folder>/<name>.npy`` memory-mapped read-only, its dtype and rank checked.

    Raises:
        FileNotFoundError: the file is missing.
        UserError: not a regular file inside ``folder``, over
            :data:`MAX_ARRAY_BYTES`, not a ``.npy`` array (pickles refused),
            or of the wrong kind of dtype or number of axes.
    """
    kind, axes = ARRAY_LAYOUT[name]
    file = check_user_file(
        folder / f"{name}.npy", f"bank array {name}", MAX_ARRAY_BYTES, inside=folder
    )
    try:
        arr = np.load(file, mmap_mode="r", allow_pickle=False)
    except Exception as err:  # whatever numpy trips on in a bad file
        brief = " ".join(str(err).split())[:160]
        raise UserError(f"{file}: not a readable .npy array ({brief})") from None
    if not isinstance(arr, np.ndarray):
        raise UserError(f"{file}: expected one .npy array, got {type(arr).__name__}")
    ok_kind = arr.dtype.kind in _KIND_CODES[kind] and not arr.dtype.fields
    if kind == "float":
        ok_kind = ok_kind and arr.dtype.itemsize in (2, 4, 8)
    if not ok_kind:
        raise UserError(
            f"{file}: dtype must be {_KIND_WORDS[kind]}, got {arr.dtype}; rebuild it"
        )
    if arr.ndim != len(axes):
        raise UserError(
            f"{file}: expected {len(axes)} axes [{', '.join(axes)}], got shape "
            f"{arr.shape}"
        )
    return arr


def check_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> None:
    """Shapes that agree across the arrays, and values in range.

    Every axis of the same name (``Q``, ``C``, ``P``, ``Kmax``) has one length,
    at least 1 (and ``Kmax <= C``: a page holds distinct candidates); indices
    are >= 0; ``relevance_raw`` is finite and >= 0; ``alpha`` is finite, >= 0,
    and each K-slot page's row sums to 1, descends, and is 0 beyond slot K.

    Raises:
        UserError: one line naming the file and what is wrong.
    """
    sizes = _axis_sizes(folder, arrays)
    if sizes["Kmax"] > sizes["C"]:
        raise UserError(
            f"{folder / 'alpha.npy'}: Kmax = {sizes['Kmax']} slots exceed the "
            f"C = {sizes['C']} candidates per query"
        )
    for name in ("queries", "candidates", "page_candidates"):
        arr = arrays[name]
        if arr.dtype.kind == "i" and (np.asarray(arr) < 0).any():
            raise UserError(f"{folder / f'{name}.npy'}: holds a negative index")
    raw = np.asarray(arrays["relevance_raw"])
    _check_finite_nonneg(folder / "relevance_raw.npy", raw)
    alpha = np.asarray(arrays["alpha"], dtype=np.float64)
    _check_finite_nonneg(folder / "alpha.npy", alpha)
    _check_alpha_pages(folder / "alpha.npy", alpha)


def _axis_sizes(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """The length of every named axis, ``UserError`` where two arrays disagree."""
    sizes: dict[str, int] = {}
    first: dict[str, str] = {}
    for name, (_, axes) in ARRAY_LAYOUT.items():
        for axis, n in zip(axes, arrays[name].shape, strict=True):
            if n < 1:
                raise UserError(
                    f"{folder / f'{name}.npy'}: axis {axis} is empty (shape "
                    f"{arrays[name].shape})"
                )
            if axis not in sizes:
                sizes[axis], first[axis] = n, name
            elif sizes[axis] != n:
                raise UserError(
                    f"{folder / f'{name}.npy'}: shape {arrays[name].shape} disagrees "
                    f"with {first[axis]}.npy: {axis} = {n} here, {sizes[axis]} there"
                )
    return sizes


def _check_finite_nonneg(file: Path, arr: NDArray) -> None:
    """``UserError`` naming ``file`` and the first NaN, infinity or negative entry."""
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise UserError(
            f"{file}: holds {int(bad.sum())} non-finite value(s), first {arr[idx]} "
            f"at index {idx}; rebuild the bank"
        )
    neg = arr < 0
    if neg.any():
        idx = tuple(int(i) for i in np.argwhere(neg)[0])
        raise UserError(
            f"{file}: holds a negative value {arr[idx]} at index {idx}; expected "
            "values >= 0"
        )


def _check_alpha_pages(file: Path, alpha: NDArray[np.float64]) -> None:
    """Each K-slot page (row K-1) sums to 1, descends, and is 0 past slot K."""
    kmax = alpha.shape[2]
    for k in range(1, kmax + 1):
        row = alpha[:, :, k - 1, :]
        sums = row[..., :k].sum(axis=-1)
        off = np.abs(sums - 1.0) > ALPHA_SUM_TOL
        if off.any():
            q, p = (int(i) for i in np.argwhere(off)[0])
            raise UserError(
                f"{file}: the {k}-slot page of query {q}, layout {p} sums to "
                f"{sums[q, p]:.6g}, expected 1"
            )
        if (row[..., k:] != 0).any():
            raise UserError(
                f"{file}: the {k}-slot pages hold nonzero alpha past slot {k}"
            )
        if k > 1 and (np.diff(row[..., :k], axis=-1) > ALPHA_SUM_TOL).any():
            raise UserError(
                f"{file}: the {k}-slot pages' alpha is not sorted descending"
            )
