"""Reading flags back from tables: ``True``/``"true"``/``1`` are true, whatever the file format made of them."""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["truthy", "is_true"]

_TRUE_STRINGS: frozenset[str] = frozenset({"true", "1", "yes"})


def is_true(value: Any) -> bool:
    """Whether one cell holds a true flag.

    Strings are true when they read ``"true"``, ``"1"`` or ``"yes"`` (any case, spaces
    around ignored); a missing value (``None``, NaN, ``pd.NA``) is false; anything else is
    ``bool(value)``.

    Args:
        value: the cell.

    Returns:
        bool.
    """
    if isinstance(value, str):
        return value.strip().lower() in _TRUE_STRINGS
    if value is None or (not isinstance(value, (list, tuple)) and pd.isna(value)):
        return False
    return bool(value)


def truthy(values: pd.Series) -> pd.Series:
    """A flag column as booleans (:func:`is_true` per cell; a bool column as it is).

    Args:
        values (Series): a column such as ``passes`` of a CSV read back.

    Returns:
        Series of bool, same index.
    """
    if values.dtype == bool:
        return values
    return values.map(is_true).astype(bool)
