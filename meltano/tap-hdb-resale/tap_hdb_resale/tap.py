"""tap-hdb-resale: HDB resale flat prices from CSV deliveries or the data.gov.sg API.

Run it as ``tap-hdb-resale --config config.json [--state state.json]`` (Meltano does this).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from typing import Any, ClassVar

from singer_sdk import Tap
from singer_sdk import singerlib as singer
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.helpers.capabilities import CapabilitiesEnum, PluginCapabilities, TapCapabilities
from singer_sdk.io_base import SingerWriter

from tap_hdb_resale import api
from tap_hdb_resale.months import MonthError, parse_month
from tap_hdb_resale.resources import FIRST_MONTH
from tap_hdb_resale.state import DEFAULT_LOOKBACK_MONTHS
from tap_hdb_resale.streams import ResaleFlatPricesStream


def _json_default(value: object) -> str:
    # As the SDK's encoder: datetimes (time_extracted) in ISO format, anything else as text.
    return value.isoformat(sep="T") if hasattr(value, "isoformat") else str(value)


class _Writer(SingerWriter):
    """The SDK's message writer, remembering the type of the last message it wrote.

    Two changes for speed, the messages being the same: RECORD messages (text values and an
    integer) are serialized by the standard library's C encoder instead of simplejson's, and
    stdout is flushed after every other message instead of after each record, so a million
    records are not a million system calls. A STATE still reaches the loader only after every
    RECORD before it: it is written to the same stream, then flushed.
    """

    last_type: str | None = None

    def serialize_message(self, message: singer.Message) -> str:
        if isinstance(message, singer.RecordMessage):
            return json.dumps(message.to_dict(), separators=(",", ":"), default=_json_default)
        return super().serialize_message(message)

    def write_message(self, message: singer.Message) -> None:
        kind = str(getattr(message.type, "value", message.type))
        sys.stdout.write(self.format_message(message) + "\n")
        if kind != "RECORD":
            sys.stdout.flush()
        self.last_type = kind


def month_setting_errors(config: Mapping[str, Any]) -> list[str]:
    """Problems with start_month and end_month, in words a user can act on."""
    errors = []
    for key in ("start_month", "end_month"):
        if key in config:
            try:
                parse_month(config[key])
            except MonthError as error:
                errors.append(f"{key}: {error}")
    if not errors and config.get("start_month", "") > config.get("end_month", "9999-12"):
        errors.append(
            f"start_month {config['start_month']} is after end_month {config['end_month']}"
        )
    if not errors and config.get("start_month", FIRST_MONTH) < FIRST_MONTH:
        errors.append(
            f"start_month {config['start_month']}: data.gov.sg publishes resale prices from "
            f"{FIRST_MONTH}; start the window there or later"
        )
    return errors


class TapHdbResale(Tap):
    """Singer tap for the HDB resale flat prices dataset (data.gov.sg)."""

    name = "tap-hdb-resale"
    message_writer_class = _Writer
    message_writer: _Writer
    # The SDK's defaults minus ACTIVATE_VERSION (which tells a loader to drop earlier rows:
    # wrong for an append-only raw layer). BATCH: in files mode, with ``batch_config`` set, the
    # rows go to the loader as a Parquet file named by a BATCH message (streams.py).
    capabilities: ClassVar[list[CapabilitiesEnum]] = [
        PluginCapabilities.BATCH,
        TapCapabilities.CATALOG,
        TapCapabilities.STATE,
        TapCapabilities.DISCOVER,
        PluginCapabilities.ABOUT,
        PluginCapabilities.STREAM_MAPS,
        PluginCapabilities.FLATTENING,
        PluginCapabilities.STRUCTURED_LOGGING,
    ]

    # One Property per setting, alike on purpose: the SDK's declarative config schema.
    config_jsonschema = th.PropertiesList(
        th.Property(
            "data_dir",
            th.StringType,
            description="Folder of CSV deliveries in data.gov.sg's export format (files "
            "mode). Leave unset to read the data.gov.sg API instead (API mode).",
        ),
        th.Property(
            "start_month",
            th.StringType,
            required=True,
            description="First registration month of the window, YYYY-MM.",
            examples=["2023-01"],
        ),
        th.Property(
            "end_month",
            th.StringType,
            required=True,
            description="Last registration month of the window, YYYY-MM (included).",
            examples=["2023-12"],
        ),
        th.Property(
            "lookback_months",
            th.IntegerType(minimum=0),
            default=DEFAULT_LOOKBACK_MONTHS,
            description="API mode: every run re-extracts the newest month already loaded and "
            "this many months before it, because data.gov.sg keeps filling and revising recent "
            "months. 0 turns this off. Files mode compares each file's fingerprint instead, so "
            "only changed files are extracted again.",
        ),
        th.Property(
            "warehouse_months",
            th.StringType,
            description="The warehouse's own record of what is loaded, as JSON: for each month "
            "the rows and fingerprint of its latest accepted delivery and the deliveries the "
            "validation gate rejected. The project passes it on every run, so the warehouse, "
            "not Meltano's state, decides which months are loaded. Unset: Meltano's state.",
        ),
        th.Property(
            "batch_messages",
            th.BooleanType,
            default=True,
            description="Files mode with batch_config set: send the rows as one BATCH file "
            "(true) or as one RECORD message per row (false). API mode always sends records.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            default=api.DEFAULT_API_URL,
            description="data.gov.sg datastore_search endpoint (API mode).",
        ),
        th.Property(
            "resource_id",
            th.StringType,
            default=api.DEFAULT_RESOURCE_ID,
            description="API mode: data.gov.sg dataset id read for the months of the newest "
            "resource (2017-01 onwards). Each older month is read from its own resource's id "
            "(tap_hdb_resale.resources); set this only if data.gov.sg republishes the newest.",
        ),
        th.Property(
            "api_key",
            th.StringType,
            secret=True,
            description="Optional data.gov.sg API key for higher rate limits, sent as the "
            "x-api-key header and never logged.",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1),
            default=api.DEFAULT_PAGE_SIZE,
            description="Records per API request; halved automatically on HTTP 413.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=api.DEFAULT_MAX_RETRIES,
            description="Retries of a request after HTTP 429, 5xx or a network error.",
        ),
        th.Property(
            "backoff_base_seconds",
            th.NumberType(minimum=0),
            default=api.DEFAULT_BACKOFF_BASE_SECONDS,
            description="First retry wait; it doubles on each retry (with jitter).",
        ),
        th.Property(
            "backoff_max_seconds",
            th.NumberType(minimum=0),
            default=api.DEFAULT_BACKOFF_MAX_SECONDS,
            description="Longest wait between retries unless the server sends Retry-After "
            "(data.gov.sg rate limits reset every 10 s).",
        ),
        th.Property(
            "request_timeout_seconds",
            th.NumberType(exclusive_minimum=0),
            default=api.DEFAULT_REQUEST_TIMEOUT_SECONDS,
            description="Seconds to wait for one API answer before retrying.",
        ),
    ).to_dict()

    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """The SDK's JSON Schema checks, plus month settings that must really be YYYY-MM."""
        errors = super()._validate_config(raise_errors=False) + month_setting_errors(self.config)
        if errors and raise_errors:
            raise ConfigValidationError(
                "Config validation failed: " + "; ".join(errors), errors=errors
            )
        return errors

    def discover_streams(self) -> list[ResaleFlatPricesStream]:
        return [ResaleFlatPricesStream(self)]

    def sync_all(self) -> None:
        """Sync, then make sure the output ends with a STATE message.

        The SDK leaves out a STATE equal to the last one it wrote, and it writes the incoming
        state when a run starts. A run that re-extracts unchanged months (API mode's lookback) would
        then end on a RECORD, and our loader rightly refuses to commit a stream that does not
        end with the tap's closing STATE.
        """
        super().sync_all()
        if self.message_writer.last_type != "STATE":
            self.write_message(singer.StateMessage(value=self.state))


if __name__ == "__main__":
    TapHdbResale.cli()
