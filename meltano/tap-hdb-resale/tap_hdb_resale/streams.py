"""The tap's one stream: HDB resale transactions, month by month, exactly as delivered."""

from __future__ import annotations

import json
import statistics
import typing as t
from collections.abc import Generator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from singer_sdk import Stream
from singer_sdk import typing as th
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
from singer_sdk.helpers.conform import TypeConformanceLevel

from tap_hdb_resale.api import ApiError, DataGovSgClient
from tap_hdb_resale.batches import write_parquet_batch
from tap_hdb_resale.deliveries import COLUMNS, value_problem
from tap_hdb_resale.months import describe_months, month_range
from tap_hdb_resale.resources import resource_of
from tap_hdb_resale.state import (
    DEFAULT_LOOKBACK_MONTHS,
    Plan,
    disagreements,
    plan_months,
    read_months,
    remember,
)
from tap_hdb_resale.window import MonthDelivery, collect_months, stream_table

# A re-delivered month with fewer rows than this share of its previous delivery, or a new
# month this much smaller than the median of its neighbours, is named in a warning: it may be
# a month still filling up, or a file cut short.
SHRINK_WARNING_SHARE = 0.8
SMALL_MONTH_SHARE = 0.5

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
    """Every row of each extracted month, values as text, with where it came from and the
    data.gov.sg resource (dataset id) that publishes its month."""

    name = "resale_flat_prices"
    # No key: identical rows are distinct real sales, and nothing may deduplicate them.
    primary_keys: t.ClassVar[list[str]] = []
    replication_key = None
    schema = th.PropertiesList(
        # Nullable: a column the resource lacks (remaining_lease before 2015) is null.
        *(th.Property(column, th.StringType, description="As delivered") for column in COLUMNS),
        th.Property("_source", th.StringType, description="Delivery file path, or API URL"),
        th.Property("_source_row", th.IntegerType, description="CSV line, or API record no."),
        th.Property(
            "_dataset_id",
            th.StringType,
            description="data.gov.sg dataset id of the resource publishing the row's month",
        ),
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
        window, known, lookback = self._window()
        if self.config.get("data_dir"):
            deliveries = self._plan_files(window, known, lookback)
            for delivery in deliveries:
                yield from delivery.records()
            extracted = _extracted(deliveries)
        else:
            extracted = yield from self._from_api(window, known, lookback)
        self.stream_state["months"] = remember(known, extracted)

    def get_batch_config(self, config: Mapping[str, Any]) -> BatchConfig | None:
        """Files mode sends BATCH messages when ``batch_config`` is set (Meltano sets it, see
        meltano/meltano.yml) unless ``batch_messages`` is false; API mode always sends RECORD
        messages, page by page."""
        batches = config.get("data_dir") and config.get("batch_messages", True)
        return super().get_batch_config(config) if batches else None

    def get_batches(
        self, batch_config: BatchConfig, context: Mapping[str, Any] | None = None
    ) -> Iterator[tuple[BaseBatchFileEncoding, list[str]]]:
        """Files mode: the planned months' rows, exactly as checked, in one Parquet file named
        by one BATCH message.

        The SDK writes a STATE message right after each BATCH message: the ``months`` bookmark
        changes just before the batch is handed over, so that STATE is the first to claim the
        months, and it follows the batch holding their rows. (Another format than Parquet goes
        through the SDK's own batcher, record by record.)
        """
        if batch_config.encoding.format != "parquet":
            yield from super().get_batches(batch_config, context)
            return
        window, known, lookback = self._window()
        deliveries = self._plan_files(window, known, lookback)
        months = remember(known, _extracted(deliveries))
        if deliveries:
            url = write_parquet_batch(
                stream_table(deliveries), batch_config, self.tap_name, self.name
            )
            self.logger.info(
                "Wrote %s rows of %d month(s) to the batch file %s",
                f"{sum(d.row_count for d in deliveries):,}",
                len(deliveries),
                url,
            )
            self.stream_state["months"] = months
            yield batch_config.encoding, [url]
        else:
            self.stream_state["months"] = months

    def _window(self) -> tuple[list[str], dict[str, dict[str, Any]], int]:
        """The run's months, what is loaded of them, and the lookback setting."""
        window = month_range(self.config["start_month"], self.config["end_month"])
        lookback = self.config.get("lookback_months")
        if lookback is None:
            lookback = DEFAULT_LOOKBACK_MONTHS
        return window, self._known_months(window), lookback

    def _known_months(self, window: Sequence[str]) -> dict[str, dict[str, Any]]:
        """What is loaded: the warehouse's own record when the project passes it (setting
        ``warehouse_months``), else Meltano's bookmark. Where they differ, a warning says so."""
        bookmark = read_months(self.stream_state)
        record = self.config.get("warehouse_months")
        if record in (None, ""):
            return bookmark
        warehouse = read_months(
            {"months": json.loads(record) if isinstance(record, str) else record}
        )
        for difference in disagreements(warehouse, bookmark, window):
            self.logger.warning(
                "%s; the warehouse's record decides what is loaded, so every month of the "
                "window it lacks is loaded and none twice (rule: the warehouse is the record "
                "of what is loaded)",
                difference[0].upper() + difference[1:],
            )
        return warehouse

    def _report_plan(self, plan: Plan, where: str) -> None:
        """Log the plan, and warn by name about months with no delivery or a rejected one."""
        self.logger.info(plan.describe())
        if plan.missing:
            self.logger.warning(
                "No delivery for %s in %s, so nothing of %s is loaded (rule: every month of "
                "the window has a delivery)",
                describe_months(plan.missing),
                where,
                "it" if len(plan.missing) == 1 else "them",
            )
        for month, rejected in plan.rejected.items():
            self.logger.warning(
                "%s: the delivery of %s in %s is the one the validation gate rejected%s%s, so it "
                "is not loaded again; fix the file, or remove it (rule: a rejected delivery "
                "stays rejected)",
                Path(str(rejected.get("source") or "")).name or where,
                month,
                where,
                f" on {rejected['rejected_at']}" if rejected.get("rejected_at") else "",
                f" (rule {rejected['rule']})" if rejected.get("rule") else "",
            )

    def _warn_small_months(
        self,
        counts: Mapping[str, int],
        reasons: Mapping[str, str],
        known: Mapping[str, Mapping[str, Any]],
        where: str,
    ) -> None:
        """Warn about a re-delivered month much smaller than its previous delivery, and a new
        month much smaller than its neighbours: a month still filling up, or a cut file."""
        sizes = {m: e["rows"] for m, e in known.items() if e.get("rows", 0) > 0}
        sizes.update({m: n for m, n in counts.items() if n > 0})
        for month, rows in counts.items():
            before = (known.get(month) or {}).get("rows", 0)
            if reasons.get(month) != "new" and before and rows < SHRINK_WARNING_SHARE * before:
                self.logger.warning(
                    "%s: %s delivers %s rows, %.0f%% of the %s rows of its previous delivery: "
                    "a month still filling up, or a file cut short? It replaces the previous "
                    "delivery downstream (rule: a re-delivery holds about as many rows as the "
                    "last)",
                    where,
                    month,
                    f"{rows:,}",
                    100 * rows / before,
                    f"{before:,}",
                )
                continue
            neighbours = [n for m, n in sizes.items() if m != month]
            if reasons.get(month) == "new" and len(neighbours) >= 2:
                typical = statistics.median(neighbours)
                if rows < SMALL_MONTH_SHARE * typical:
                    self.logger.warning(
                        "%s: %s delivers %s rows, under half the %s of a typical month: a month "
                        "still filling up, or a file cut short? (rule: a new month holds about "
                        "as many rows as its neighbours)",
                        where,
                        month,
                        f"{rows:,}",
                        f"{typical:,.0f}",
                    )

    def _plan_files(self, window: Sequence[str], known: dict, lookback: int) -> list[MonthDelivery]:
        """Files mode: read and check every delivery of the window, then return the months
        the plan extracts, with their rows."""
        folder = Path(self.config["data_dir"])
        deliveries = collect_months(folder, window, self.logger)
        fingerprints = {month: delivery.fingerprint for month, delivery in deliveries.items()}
        plan = plan_months(window, known, lookback, fingerprints)
        self._report_plan(plan, str(folder))
        self._warn_small_months(
            {m: deliveries[m].row_count for m in plan.extract}, plan.extract, known, str(folder)
        )
        return [deliveries[month] for month in plan.extract]

    def _from_api(self, window: Sequence[str], known: dict, lookback: int) -> Extraction:
        """API mode: ask data.gov.sg for each planned month, page by page."""
        plan = plan_months(window, known, lookback)
        self._report_plan(plan, "data.gov.sg")
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
        self._warn_small_months(
            {m: n for m, (n, _) in extracted.items()}, plan.extract, known, "data.gov.sg"
        )
        return extracted


def _extracted(deliveries: Sequence[MonthDelivery]) -> dict[str, tuple[int, str | None]]:
    """Each delivered month's rows and fingerprint, for the ``months`` bookmark."""
    return {delivery.month: (delivery.row_count, delivery.fingerprint) for delivery in deliveries}


def _api_record(values: Mapping[str, str], month: str, source: str, number: int) -> dict:
    """One API record as a stream record, held to the same rules as a CSV row: it has the
    columns of its month's resource; a column the resource lacks is null."""
    resource = resource_of(month)
    for column in resource.columns:
        value = values.get(column)
        if value is None:
            problem = "missing from the record"
            rule = f"every record has the columns of its resource ({resource.dataset_id})"
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
    record: dict[str, Any] = {
        column: values[column] if column in resource.columns else None for column in COLUMNS
    }
    return {**record, "_source": source, "_source_row": number, "_dataset_id": resource.dataset_id}
