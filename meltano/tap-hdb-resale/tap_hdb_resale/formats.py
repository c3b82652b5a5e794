"""What a delivery must look like: its header, its rows, and the resource of its months.

data.gov.sg publishes the resale prices in five resources (tap_hdb_resale.resources) whose
columns differ: the three before 2015 have no ``remaining_lease``. A delivery's header names
the columns of one of them, and every row's month must belong to a resource with exactly those
columns. A problem is a :class:`DeliveryError` naming the file, line, column and rule.
"""

from __future__ import annotations

import logging
import re

from tap_hdb_resale.months import MonthError, parse_month
from tap_hdb_resale.resources import COLUMNS, FIRST_MONTH, Resource, resource_of

NUMERIC_COLUMNS = ("floor_area_sqm", "resale_price")

_NUMBER_RE = re.compile(r"^-?\d+(\.\d+)?$")
REDOWNLOAD = "Fix the file, or download it again with `make data`."

logger = logging.getLogger(__name__)


class DeliveryError(ValueError):
    """A delivery the tap refuses; the message says where, which rule, and what to do."""

    def __init__(
        self,
        file: str,
        line: int | None,
        problem: str,
        *,
        rule: str,
        todo: str,
        column: str | None = None,
    ) -> None:
        where = [file]
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column}")
        super().__init__(f"{', '.join(where)}: {problem} (rule: {rule}). {todo}")


def value_problem(column: str, value: str) -> tuple[str, str] | None:
    """What is wrong with one source value, as ``(problem, rule)``, or None if it is fine."""
    if column == "month":
        try:
            parse_month(value)
        except MonthError as error:
            return str(error), "month must be YYYY-MM"
    if column in NUMERIC_COLUMNS and not _NUMBER_RE.match(value):
        return f"{value!r} is not a number", f"{column} must be numeric"
    return None


def check_header(
    name: str, header: list[str], log: logging.Logger = logger, *, warn: bool = True
) -> dict[str, int]:
    """Map each source column of the header to its position (found by name).

    A header names the columns of one of the resources (tap_hdb_resale.resources): the
    eleven, or the ten without ``remaining_lease`` of the resources before 2015; whether they
    fit the months of the file's rows is checked row by row (:func:`check_resource`).
    Columns beyond the eleven are not loaded (the raw layer has the eleven); a warning names
    them, so a new column in data.gov.sg's export does not go unnoticed.
    """
    if not header:
        raise DeliveryError(
            name,
            1,
            "the file is empty: there is no header row",
            rule="a delivery starts with a header row naming the source columns",
            todo=REDOWNLOAD,
        )
    found = [column.strip() for column in header]
    missing = [column for column in COLUMNS if column not in found]
    if missing and missing != ["remaining_lease"]:
        raise DeliveryError(
            name,
            1,
            f"missing from the header, which has: {', '.join(found)}",
            column=", ".join(missing),
            rule=f"the header names the eleven columns ({', '.join(COLUMNS)}), or the ten "
            "without remaining_lease of the resources before 2015",
            todo="Check that the file is a data.gov.sg export of the HDB resale flat prices.",
        )
    for column in COLUMNS:
        if found.count(column) > 1:
            raise DeliveryError(
                name,
                1,
                "appears more than once in the header",
                column=column,
                rule="each column appears once",
                todo=REDOWNLOAD,
            )
    extra = [column for column in found if column not in COLUMNS]
    if extra and warn:
        log.warning(
            "%s, line 1: column(s) %s are not among the eleven the raw layer keeps, so they "
            "are not loaded (rule: the header names the eleven columns; others are ignored)",
            name,
            ", ".join(repr(column) for column in extra),
        )
    return {column: found.index(column) for column in COLUMNS if column in found}


def check_resource(name: str, line: int, month: str, columns: frozenset[str]) -> Resource:
    """The resource of ``month``, whose columns must be the file's: a file without
    ``remaining_lease`` delivering a month of 2015 or later, or one with it delivering a month
    before 2015, is not that month's data.gov.sg export."""
    try:
        resource = resource_of(month)
    except ValueError:
        raise DeliveryError(
            name,
            line,
            f"a row of {month}: data.gov.sg publishes no resale prices before {FIRST_MONTH}",
            column="month",
            rule=f"rows are of months from {FIRST_MONTH}",
            todo="Check the month of the row; fix the file, or download it again.",
        ) from None
    if columns != set(resource.columns):
        has = "has" if "remaining_lease" in columns else "lacks"
        does = "has" if resource.has_remaining_lease else "does not have"
        raise DeliveryError(
            name,
            line,
            f"a row of {month}, but the file {has} remaining_lease, which the resource of "
            f"{month} ({resource.title}, dataset {resource.dataset_id}) {does}",
            column="remaining_lease",
            rule="a file's columns are those of the resource of its rows' months",
            todo="Keep each resource's rows in a file of its own format, as data.gov.sg "
            "publishes them (or as `make data` writes them).",
        )
    return resource


def check_row(name: str, line: int, fields: list[str], header: list[str]) -> None:
    """Refuse a row whose field count differs from the header's (e.g. a truncated line)."""
    if len(fields) == len(header):
        return
    if len(fields) < len(header):
        column = header[len(fields)].strip()
        problem = f"the row has {len(fields)} fields, the header {len(header)}: it ends early"
    else:
        column = f"{len(header) + 1} (after the last header column)"
        problem = f"the row has {len(fields)} fields, the header only {len(header)}"
    raise DeliveryError(
        name,
        line,
        problem,
        column=column,
        rule="every row has as many fields as the header",
        todo="The file may be truncated or hand-edited: fix it, or download it again.",
    )
