"""Registration months (``YYYY-MM``), the unit every stage of the pipeline works in."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

from tap_hdb_resale.resources import FIRST_MONTH

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
# The first month data.gov.sg publishes resale prices for (the oldest of its five resources,
# tap_hdb_resale.resources): settings, partitions and `make data` start here.
FIRST_DATASET_MONTH = FIRST_MONTH


class MonthError(ValueError):
    """A value that is not a ``YYYY-MM`` month."""


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month; sorts and compares in time order."""

    year: int
    month: int

    @classmethod
    def parse(cls, value: str) -> Month:
        """Parse ``YYYY-MM``; anything else raises :class:`MonthError` saying what is expected."""
        text = str(value).strip()
        match = _MONTH_RE.match(text)
        if not match:
            raise MonthError(f"{value!r} is not a month: expected YYYY-MM, for example 2023-07.")
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12:
            raise MonthError(f"{value!r} is not a month: the month part must be 01 to 12.")
        if year < 1960:
            raise MonthError(f"{value!r} is not a plausible registration month (before 1960).")
        return cls(year, month)

    @classmethod
    def of(cls, day: date) -> Month:
        """The month a date falls in."""
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"

    def shift(self, months: int) -> Month:
        """This month moved by ``months`` (negative goes back)."""
        index = self.year * 12 + (self.month - 1) + months
        return Month(index // 12, index % 12 + 1)

    def range_to(self, end: Month) -> list[Month]:
        """Every month from this one to ``end``, both included."""
        months: list[Month] = []
        current = self
        while current <= end:
            months.append(current)
            current = current.shift(1)
        return months

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)
