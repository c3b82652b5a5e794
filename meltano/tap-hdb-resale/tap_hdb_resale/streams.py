"""The tap's one stream: HDB resale transactions, month by month, exactly as delivered."""

from __future__ import annotations

import typing as t
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_hdb_resale.api import ApiError, DataGovSgClient
from tap_hdb_resale.deliveries import COLUMNS, collect_months, value_problem
from tap_hdb_resale.months import month_range
from tap_hdb_resale.state import DEFAULT_LOOKBACK_MONTHS, plan_months, read_months, remember

# What a source yields: records, then (as the generator's return value) the months it
# extracted with their (rows, fingerprint), for the state.
Extraction = Generator[dict[str, Any], None, dict[str, tuple[int, str | None]]]

CLIENT_SETTINGS = (
    "api_url",
    "resource_id",
    "api_key",
    "page_size",
    "max_retries",
    "backoff_base_seconds",
    "backoff_max_seconds",
    "request_timeout_seconds",
)


class ResaleFlatPricesStream(Stream):
    """Every row of each extracted month, values as text, with where it came from."""

    name = "resale_flat_prices"
    # No key: identical rows are distinct real sales, and nothing may deduplicate them.
    primary_keys: t.ClassVar[list[str]] = []
    replication_key = None
    schema = th.PropertiesList(
        *(th.Property(column, th.StringType, description="As delivered") for column in COLUMNS),
        th.Property("_source", th.StringType, description="Delivery file path, or API URL"),
        th.Property("_source_row", th.IntegerType, description="CSV line, or API record no."),
    ).to_dict()

    # Records are built here to the schema (text values, an integer line number): the SDK's
    # per-value type conformance would only cost time (a third of the tap's, at 1M rows).
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    @property
    def emit_activate_version_messages(self) -> bool:
        """Never: ACTIVATE_VERSION would let a loader drop earlier deliveries from raw."""
        return False

    def get_records(self, context: Mapping[str, Any] | None) -> Extraction:
        """Yield the records of the months this run extracts, then update the state.

        The ``months`` bookmark changes only after the last record was handed over, so a
        STATE message never claims a month whose records were not all emitted.
        """
        window = month_range(self.config["start_month"], self.config["end_month"])
        known = read_months(self.stream_state)
        lookback = self.config.get("lookback_months")
        if lookback is None:
            lookback = DEFAULT_LOOKBACK_MONTHS
        if self.config.get("data_dir"):
            extracted = yield from self._from_files(window, known, lookback)
        else:
            extracted = yield from self._from_api(window, known, lookback)
        self.stream_state["months"] = remember(known, extracted)

    def _from_files(self, window: Sequence[str], known: dict, lookback: int) -> Extraction:
        """Files mode: check every delivery of the window first, then emit the planned months."""
        deliveries = collect_months(Path(self.config["data_dir"]), window, self.logger)
        fingerprints = {month: delivery.fingerprint for month, delivery in deliveries.items()}
        plan = plan_months(window, known, lookback, fingerprints)
        self.logger.info(plan.describe())
        for month in plan.extract:
            delivery = deliveries[month]
            source = str(delivery.path)
            for row in delivery.read_rows(self.logger):
                yield {**row.as_record(), "_source": source, "_source_row": row.line}
        return {month: (deliveries[month].row_count, fingerprints[month]) for month in plan.extract}

    def _from_api(self, window: Sequence[str], known: dict, lookback: int) -> Extraction:
        """API mode: ask data.gov.sg for each planned month, page by page."""
        plan = plan_months(window, known, lookback)
        self.logger.info(plan.describe())
        # Unset and empty settings (Meltano passes "" for an unset env var) keep the defaults.
        settings = {
            key: self.config[key]
            for key in CLIENT_SETTINGS
            if self.config.get(key) not in (None, "")
        }
        extracted: dict[str, tuple[int, str | None]] = {}
        with DataGovSgClient(**settings) as client:
            for month in plan.extract:
                source = client.month_url(month)
                number = 0
                for number, values in enumerate(client.iter_month(month), start=1):
                    yield _api_record(values, month, source, number)
                self.logger.info("%s: %d records from data.gov.sg", month, number)
                extracted[month] = (number, None)
        return extracted


def _api_record(values: Mapping[str, str], month: str, source: str, number: int) -> dict:
    """One API record as a stream record, held to the same rules as a CSV row."""
    for column in COLUMNS:
        value = values.get(column)
        if value is None:
            problem, rule = "missing from the record", "every record has the eleven columns"
        elif column == "month" and value != month:
            problem, rule = f"{value!r} in the answer for {month}", "records are of the month asked"
        else:
            problem, rule = value_problem(column, value) or ("", "")
        if problem:
            raise ApiError(
                f"{source}, record {number}, column {column}: {problem} (rule: {rule}). "
                "data.gov.sg delivered a record the raw layer cannot take: report it to the "
                "maintainers, or leave that month out of the window."
            )
    record: dict[str, Any] = {column: values[column] for column in COLUMNS}
    return {**record, "_source": source, "_source_row": number}
