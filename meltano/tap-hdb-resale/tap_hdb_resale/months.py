"""Registration months as ``YYYY-MM`` strings.

Months stay plain strings everywhere (in settings, records, state and file names): zero-padded
``YYYY-MM`` text sorts in time order, so ``min``, ``max`` and ``sorted`` just work.
"""

from __future__ import annotations

import re

MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


class MonthError(ValueError):
    """A value that is not a ``YYYY-MM`` month; the message says what is expected."""


def parse_month(value: object) -> str:
    """Return ``value`` as a checked ``YYYY-MM`` month, or raise :class:`MonthError`."""
    match = MONTH_RE.match(value) if isinstance(value, str) else None
    if not match:
        raise MonthError(f"{value!r} is not a month: expected YYYY-MM, for example 2023-07")
    if not 1 <= int(match.group(2)) <= 12:
        raise MonthError(f"{value!r} is not a month: expected YYYY-MM with MM from 01 to 12")
    return value  # type: ignore[return-value]


def shift_month(month: str, months: int) -> str:
    """``month`` moved by ``months`` (negative goes back in time)."""
    index = int(month[:4]) * 12 + int(month[5:7]) - 1 + months
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


def month_range(start: str, end: str) -> list[str]:
    """Every month from ``start`` to ``end``, both included, oldest first."""
    months = []
    month = start
    while month <= end:
        months.append(month)
        month = shift_month(month, 1)
    return months


def describe_months(months: list[str]) -> str:
    """A short human list, runs of consecutive months written ``first..last``."""
    if not months:
        return "none"
    runs: list[list[str]] = []
    for month in sorted(months):
        if runs and shift_month(runs[-1][-1], 1) == month:
            runs[-1].append(month)
        else:
            runs.append([month])
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}..{run[-1]}" for run in runs)
