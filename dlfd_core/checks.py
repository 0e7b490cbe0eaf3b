"""Checks on values that reach the package from people: seeds and numbers typed in forms, files or requests.

One place for the rules every entry point shares (the CLI, split files, method settings, the web app), so that a
seed or a number is accepted or refused the same way wherever it is given.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import DLFDError

__all__ = ["MAX_SEED", "check_seed", "read_flag", "read_number", "read_whole", "shown"]

#: The largest seed: what numpy's and torch's seeding both take.
MAX_SEED = 2**32 - 1

_TRUE_WORDS = ("true", "1", "yes", "on")
_FALSE_WORDS = ("false", "0", "no", "off")


def shown(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages (a huge int has no repr in Python 3.11+)."""
    try:
        text = repr(value)
    except ValueError:
        return "a number too long to show"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_seed(value: Any, what: str = "seed", error: type[DLFDError] = DLFDError) -> int:
    """``value`` as a seed: an integer (not a bool, float or text) from 0 to :data:`MAX_SEED`.

    Raises:
        error: naming ``what`` and the bad value.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= int(value) <= MAX_SEED:
        raise error(f"{what} must be an integer from 0 to {MAX_SEED}, got {shown(value, 40)}.")
    return int(value)


def read_flag(value: Any, what: str) -> bool:
    """A yes/no value: a bool, or text that clearly says one (``"false"`` is False, never Python's ``bool("false")``).

    Raises:
        DLFDError: anything else.
    """
    if isinstance(value, bool):
        return value
    text = value.strip().lower() if isinstance(value, str) else None
    if text in _TRUE_WORDS + _FALSE_WORDS:
        return text in _TRUE_WORDS
    raise DLFDError(f"{what} must be true or false (or 1 / 0), got {shown(value)}")


def read_whole(value: Any, what: str) -> int:
    """A whole number: an int, a float with no fraction (``3.0``) or its text; 2.5, bools, NaN and infinities are
    refused, never rounded.

    Raises:
        DLFDError: anything else.
    """
    number: Any = value
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            try:
                number = float(value.strip())
            except ValueError:
                number = None
    if isinstance(number, numbers.Integral) and not isinstance(number, bool):
        return int(number)
    if isinstance(number, float) and math.isfinite(number) and number.is_integer():
        return int(number)
    raise DLFDError(f"{what} must be a whole number, got {shown(value)}")


def read_number(value: Any, what: str) -> float:
    """A finite number, or its text (``"1e-3"``); bools, NaN and infinities are refused.

    Raises:
        DLFDError: anything else.
    """
    number: Any = value
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if isinstance(number, numbers.Real) and not isinstance(number, bool):
        try:
            number = float(number)
        except OverflowError:
            number = math.inf
        if math.isfinite(number):
            return number
    raise DLFDError(f"{what} must be a finite number, got {shown(value)}")
