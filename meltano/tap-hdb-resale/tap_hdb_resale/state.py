"""Which months a run extracts, and what it remembers for the next run.

The tap keeps its own bookmark beside the SDK's, in ``bookmarks.resale_flat_prices``::

    "months": {"2023-01": {"rows": 2552, "fingerprint": "<sha256 hex>"}, ...}

``rows`` is how many records the month's last extraction emitted; ``fingerprint`` is the
SHA-256 of its normalized rows in files mode (see ``deliveries.fingerprint``) and null in API
mode, where knowing it would mean downloading the month anyway.

The warehouse is the record of what is loaded, not this bookmark: the project hands the tap
the warehouse's own record (setting ``warehouse_months``, same shape, plus each month's
rejected deliveries), and the tap plans from it. A warehouse copied, restored from a backup,
or run with a lost Meltano database then loads exactly the months it lacks; where the bookmark
disagrees, :func:`disagreements` says how.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tap_hdb_resale.months import MonthError, describe_months, parse_month, shift_month

DEFAULT_LOOKBACK_MONTHS = 1
REASONS = ("new", "changed", "lookback")


@dataclass(frozen=True)
class Plan:
    """The months of the window a run extracts (with the reason) and those it skips."""

    extract: dict[str, str]
    unchanged: list[str]
    missing: list[str] = field(default_factory=list)
    rejected: dict[str, dict[str, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        """One log line: what is extracted and why, what is skipped."""
        parts = [
            f"{reason}: {describe_months([m for m, r in self.extract.items() if r == reason])}"
            for reason in REASONS
        ]
        text = f"Months to extract: {'; '.join(parts)}. Skipped as unchanged: "
        text += describe_months(self.unchanged)
        if self.missing:
            text += f". No delivery for: {describe_months(self.missing)}"
        if self.rejected:
            text += f". Rejected before, not loaded again: {describe_months(list(self.rejected))}"
        return text + "."


def _malformed(problem: str) -> ValueError:
    return ValueError(
        f"The state's bookmarks.resale_flat_prices.months is malformed ({problem}). "
        "Clear the state (meltano state clear) to extract the whole window again."
    )


def read_months(stream_state: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``months`` bookmark of a stream state, checked (empty when there is none)."""
    months = stream_state.get("months") or {}
    if not isinstance(months, dict):
        raise _malformed("it is not an object")
    for month, entry in months.items():
        try:
            parse_month(month)
        except MonthError as error:
            raise _malformed(str(error)) from None
        if not isinstance(entry, dict) or not isinstance(entry.get("rows"), int):
            raise _malformed(f"{month}: {entry!r} has no integer 'rows'")
    return {month: dict(entry) for month, entry in months.items()}


def lookback_months(known: Mapping[str, Mapping[str, Any]], lookback: int) -> set[str]:
    """The newest month loaded with rows, and the ``lookback`` months before it (0: none)."""
    loaded = [month for month, entry in known.items() if entry["rows"] > 0]
    if lookback <= 0 or not loaded:
        return set()
    newest = max(loaded)
    return {shift_month(newest, -back) for back in range(lookback + 1)}


def plan_months(
    window: Sequence[str],
    known: Mapping[str, Mapping[str, Any]],
    lookback: int,
    available: Mapping[str, str] | None = None,
) -> Plan:
    """Decide which months of ``window`` to extract.

    ``available`` maps each month that has a delivery to its fingerprint (files mode); None
    means every month can be asked for (API mode). A month is extracted when it is new (not
    in state, or empty last time), changed (files mode: another fingerprint) or in lookback
    (API mode only). In files mode the fingerprint already tells whether a month's content
    changed, so an unchanged file is never extracted again: a re-run adds no duplicate
    delivery to raw and leaves the marts byte-identical.
    """
    back = lookback_months(known, lookback) if available is None else set()
    extract: dict[str, str] = {}
    unchanged: list[str] = []
    missing: list[str] = []
    rejected: dict[str, dict[str, Any]] = {}
    for month in window:
        entry = known.get(month)
        refused = {item.get("fingerprint"): item for item in (entry or {}).get("rejected") or []}
        if available is not None and month not in available:
            missing.append(month)
        elif available is not None and available[month] in refused:
            rejected[month] = refused[available[month]]
        elif entry is None or entry["rows"] == 0:
            extract[month] = "new"
        elif available is not None and entry.get("fingerprint") != available[month]:
            extract[month] = "changed"
        elif month in back:
            extract[month] = "lookback"
        else:
            unchanged.append(month)
    return Plan(extract, unchanged, missing, rejected)


def remember(
    known: Mapping[str, Mapping[str, Any]], extracted: Mapping[str, tuple[int, str | None]]
) -> dict[str, dict[str, Any]]:
    """The new ``months`` bookmark: ``known`` updated with each extracted month's
    ``(rows, fingerprint)``. Months not extracted keep their rows and fingerprint (what the
    warehouse's record adds, such as rejected deliveries, is not the bookmark's to keep)."""
    months = {
        month: {"rows": entry["rows"], "fingerprint": entry.get("fingerprint")}
        for month, entry in known.items()
        if entry["rows"] > 0 or "rejected" not in entry
    }
    for month, (rows, fingerprint) in extracted.items():
        months[month] = {"rows": rows, "fingerprint": fingerprint}
    return dict(sorted(months.items()))


def disagreements(
    warehouse: Mapping[str, Mapping[str, Any]],
    bookmark: Mapping[str, Mapping[str, Any]],
    window: Sequence[str],
) -> list[str]:
    """How Meltano's bookmark and the warehouse's record differ about the window's months,
    one phrase per kind of difference (empty when they agree)."""

    def loaded(record: Mapping[str, Mapping[str, Any]], month: str) -> bool:
        return (record.get(month) or {}).get("rows", 0) > 0

    only_state = [m for m in window if loaded(bookmark, m) and not loaded(warehouse, m)]
    only_warehouse = [m for m in window if loaded(warehouse, m) and not loaded(bookmark, m)]
    other = [
        m
        for m in window
        if loaded(warehouse, m)
        and loaded(bookmark, m)
        and (warehouse[m].get("rows"), warehouse[m].get("fingerprint"))
        != (bookmark[m].get("rows"), bookmark[m].get("fingerprint"))
    ]

    def them(months: list[str]) -> str:
        return "it" if len(months) == 1 else "them"

    found = []
    if only_state:
        found.append(
            f"Meltano's state records {describe_months(only_state)} as loaded, but the warehouse "
            f"holds no accepted delivery of {them(only_state)} (a copied or restored warehouse?)"
        )
    if only_warehouse:
        found.append(
            f"the warehouse holds {describe_months(only_warehouse)}, which Meltano's state does "
            "not record (a lost or shared Meltano database?)"
        )
    if other:
        found.append(
            f"for {describe_months(other)} Meltano's state records another delivery than the "
            "warehouse's latest accepted one"
        )
    return found
