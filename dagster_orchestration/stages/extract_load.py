"""Stage 1: extract-load (Meltano), deliveries into the raw layer."""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue

from dagster_orchestration.dagstermill_assets import stage_asset
from dagster_orchestration.metadata import markdown_table
from hdb_elt.extract_load import last_extract_load, source_name
from hdb_elt.settings import Settings
from hdb_elt.warehouse import LATEST_DELIVERIES, ensure_latest_deliveries, query_df

WARNINGS = "warnings"


def latest_deliveries(settings: Settings):
    """Per month of the window: the latest accepted delivery's load id, file, rows and load
    time (``raw.latest_deliveries``)."""
    ensure_latest_deliveries(settings.warehouse_path)
    frame = query_df(
        settings.warehouse_path,
        f"""select month, _load_id as load_id, min(_source) as source, count(*) as rows,
                min(_loaded_at) as loaded_at
            from {LATEST_DELIVERIES} where month between ? and ?
            group by month, _load_id order by month""",
        [str(settings.start_month), str(settings.end_month)],
    )
    frame["source"] = frame["source"].map(source_name)
    return frame


def metadata(settings: Settings) -> dict[str, Any]:
    latest = latest_deliveries(settings)
    load_ids = sorted(set(latest["load_id"]))
    said = last_extract_load(settings.warehouse_path) or {}
    return {
        "source": MetadataValue.text(said.get("source") or settings.source_label),
        # The tap's warnings of this run (a month with no delivery, a file not read, Meltano's
        # state disagreeing with the warehouse...): make run's summary repeats them.
        WARNINGS: MetadataValue.md(
            "\n".join(f"- {text}" for text in said.get("warnings") or []) or "none"
        ),
        "rows": MetadataValue.int(int(latest["rows"].sum())),
        "months with deliveries": MetadataValue.int(len(latest)),
        "load id": MetadataValue.text(", ".join(load_ids) or "-"),
        "latest deliveries": markdown_table(latest),
    }


extract_load = stage_asset("01_extract_load", tool="meltano", metadata=metadata)
