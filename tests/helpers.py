"""Small helpers shared by several test files."""

from __future__ import annotations

import numpy as np
from gymnasium.utils.env_checker import data_equivalence


def nan_equal(a, b, exact=False):
    """gymnasium's ``data_equivalence``, but two NaN floats are equal.

    The env's infos use NaN for numbers that are undefined (a round where
    nothing traded); the checkers' seed tests compare infos with ``==``.
    """
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(nan_equal(a[k], b[k], exact) for k in a)
    return data_equivalence(a, b, exact)
