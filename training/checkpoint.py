"""Tensors without pickle: the weights files of a run folder.

The run folder itself (layout, manifest, lock, checkpoints, pruning) is
:mod:`training.run`; its names are re-exported here for the loaders.

**No code in a run folder.** Weights (and, for ``--resume``, optimizer state)
are safetensors files: raw tensors plus a JSON index, read without pickle.
Everything needed to rebuild a model (algorithm, network shape, activation,
observation and action spaces, SB3 hyperparameters, step counts, action maps)
is plain JSON in ``manifest.json``. Runs of the first format (SB3 ``.zip``
models, which unpickle on load) are refused, never read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from attn_env.errors import UserError
from training.run import (
    CONFIG,
    FORMAT,
    MANIFEST,
    WEIGHTS,
    check_run_manifest,
    inside_run,
    read_manifest,
    write_checkpoint,
)

_TREE = "attn-market/tree"
"safetensors metadata key of the JSON index that rebuilds nested state dicts."

__all__ = [
    "CONFIG",
    "FORMAT",
    "MANIFEST",
    "WEIGHTS",
    "check_run_manifest",
    "inside_run",
    "load_tensors",
    "read_manifest",
    "save_tensors",
    "write_checkpoint",
]


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- tensors without pickle -----------------------------------------------------------


def save_tensors(path: str | Path, tree: Any) -> None:
    """Write nested dicts/lists of tensors and plain values as one safetensors file.

    Tensors go in as tensors (copied to the CPU), numpy arrays as tensors too
    (they come back as tensors), numpy scalars as plain numbers; the nesting
    and the plain values (optimizer hyperparameters, step counts) as a JSON
    index in the file's metadata. :func:`load_tensors` rebuilds ``tree``.
    """
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    index = _encode(tree, "", tensors)
    save_file(tensors, str(path), metadata={_TREE: json.dumps(index)})


def load_tensors(path: str | Path, part: str | None = None, device: str = "cpu") -> Any:
    """What :func:`save_tensors` wrote (only the top-level entry ``part`` if given).

    Never unpickles: safetensors holds raw tensor bytes and the index is JSON.

    Raises:
        FileNotFoundError: ``path`` is missing (the message names it).
        UserError: ``path`` is not such a file (one line naming it).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: weights file named by the manifest is missing"
        )
    try:
        with safe_open(str(path), framework="pt", device=device) as fh:
            index = json.loads((fh.metadata() or {})[_TREE])
            if part is not None:
                index = dict(_pairs(index))[part]
            return _decode(index, fh, set(fh.keys()))
    except Exception as err:  # anything wrong with the file: one line naming it
        raise UserError(
            f"{path}: not a readable attn-market weights file ({_one_line(err)})"
        ) from None


def _encode(obj: Any, key: str, out: dict[str, Any]) -> Any:
    import torch

    if isinstance(obj, np.ndarray):
        obj = torch.from_numpy(np.array(obj))  # a writable copy
    elif isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, torch.Tensor):
        if key in out:
            raise ValueError(f"two tensors would share the name {key!r}")
        out[key] = obj.detach().to("cpu").contiguous().clone()
        return {"$t": key}
    if isinstance(obj, dict):
        for k in obj:
            if isinstance(k, bool) or not isinstance(k, str | int):
                raise TypeError(f"cannot store a dict key {k!r} at {key!r}")
        return {"$d": [[k, _encode(v, f"{key}/{k}", out)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        items = [_encode(v, f"{key}/{i}", out) for i, v in enumerate(obj)]
        return {"$l" if isinstance(obj, list) else "$tu": items}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"cannot store a {type(obj).__name__} at {key!r}")


def _pairs(node: Any) -> list[tuple[Any, Any]]:
    if not (isinstance(node, dict) and set(node) == {"$d"}):
        raise ValueError("malformed index: expected a dict node")
    pairs = node["$d"]
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and isinstance(p[0], str | int)
        for p in pairs
    ):
        raise ValueError("malformed index: bad dict entries")
    return [(k, v) for k, v in pairs]


def _decode(node: Any, fh: Any, names: set[str]) -> Any:
    if node is None or isinstance(node, bool | int | float | str):
        return node
    if not isinstance(node, dict) or len(node) != 1:
        raise ValueError("malformed index node")
    ((tag, value),) = node.items()
    if tag == "$t":
        if value not in names:
            raise ValueError(f"index names a missing tensor {value!r}")
        return fh.get_tensor(value)
    if tag == "$d":
        return {k: _decode(v, fh, names) for k, v in _pairs(node)}
    if tag in ("$l", "$tu") and isinstance(value, list):
        items = [_decode(v, fh, names) for v in value]
        return items if tag == "$l" else tuple(items)
    raise ValueError(f"malformed index tag {tag!r}")
