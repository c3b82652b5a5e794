"""The validate stage's data-quality gate over the raw rows of a load, one concern a module:

- :mod:`~hdb_elt.validation.rules`: what the gate checks (known values, plausible ranges, the
  :class:`Rule` objects in :data:`RULES`): the one file to edit to add a rule.
- :mod:`~hdb_elt.validation.raw_rows`: reading the rows a window's validation checks
  (:func:`read_deliveries`), and saying why a window has none.
- :mod:`~hdb_elt.validation.engine`: pandera checks the rows against the rules, and each failure
  becomes a raw row, a rule and a sentence in a :class:`ValidationReport` (:func:`validate_load`).
- :mod:`~hdb_elt.validation.gate`: the audit tables (:func:`record_results`), the rejected
  deliveries (:func:`withdraw_rejection`) and the gate itself (:func:`raise_if_blocked`).
- :mod:`~hdb_elt.validation.locations`: a raw row's file and line in words.

The names below are the ones notebooks, the orchestrator, exercises and tests import.
"""

from __future__ import annotations

from hdb_elt.validation.engine import (
    FAILURE_COLUMNS,
    QUARANTINE_COLUMNS,
    RESULT_COLUMNS,
    Failure,
    ValidationReport,
    quarantined_sample,
    validate_load,
)
from hdb_elt.validation.gate import (
    ValidationBlocked,
    raise_if_blocked,
    record_results,
    rejected_partitions,
    withdraw_rejection,
)
from hdb_elt.validation.raw_rows import (
    DataQualityError,
    NothingToValidate,
    RejectedDeliveriesWarning,
    read_deliveries,
)
from hdb_elt.validation.rules import (
    CONTROL_CHARACTERS,
    DEFAULT_MAX_QUARANTINE_FRACTION,
    EARLIEST_LEASE_YEAR,
    FLOOR_AREA_SQM_RANGE,
    KNOWN_FLAT_TYPES,
    KNOWN_TOWNS,
    LEASE_YEAR_MARGIN,
    MAX_TWIN_SHARE,
    METADATA_COLUMNS,
    MONTH_PATTERN,
    NUMBER_PATTERN,
    REQUIRED_COLUMNS,
    RESALE_PRICE_CEILING,
    RESALE_PRICE_FLOORS,
    RULES,
    STOREY_RANGE_PATTERN,
    THRESHOLD_RULE,
    YEAR_PATTERN,
    Rule,
    Window,
    remaining_lease_form,
    rules_table,
)

__all__ = [
    "CONTROL_CHARACTERS",
    "DEFAULT_MAX_QUARANTINE_FRACTION",
    "EARLIEST_LEASE_YEAR",
    "FAILURE_COLUMNS",
    "FLOOR_AREA_SQM_RANGE",
    "KNOWN_FLAT_TYPES",
    "KNOWN_TOWNS",
    "LEASE_YEAR_MARGIN",
    "MAX_TWIN_SHARE",
    "METADATA_COLUMNS",
    "MONTH_PATTERN",
    "NUMBER_PATTERN",
    "QUARANTINE_COLUMNS",
    "REQUIRED_COLUMNS",
    "RESALE_PRICE_CEILING",
    "RESALE_PRICE_FLOORS",
    "RESULT_COLUMNS",
    "RULES",
    "STOREY_RANGE_PATTERN",
    "THRESHOLD_RULE",
    "YEAR_PATTERN",
    "DataQualityError",
    "Failure",
    "NothingToValidate",
    "RejectedDeliveriesWarning",
    "Rule",
    "ValidationBlocked",
    "ValidationReport",
    "Window",
    "quarantined_sample",
    "raise_if_blocked",
    "read_deliveries",
    "record_results",
    "rejected_partitions",
    "remaining_lease_form",
    "rules_table",
    "validate_load",
    "withdraw_rejection",
]
