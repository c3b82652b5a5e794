"""Stage 5: report (charts and a summary from the marts)."""

from __future__ import annotations

import base64
from typing import Any

from dagster import MetadataValue

from dagster_orchestration.dagstermill_assets import stage_asset
from dagster_orchestration.stages.test import test
from hdb_elt.report import SUMMARY_FILE, report_dir
from hdb_elt.settings import Settings, display_path

CHART = "price_by_flat_type.png"


def metadata(settings: Settings) -> dict[str, Any]:
    folder = report_dir(settings.warehouse_path)
    chart = base64.b64encode((folder / CHART).read_bytes()).decode("ascii")
    return {
        "summary": MetadataValue.md((folder / SUMMARY_FILE).read_text(encoding="utf-8")),
        "chart": MetadataValue.md(f"![Resale prices by flat type](data:image/png;base64,{chart})"),
        "report folder": MetadataValue.path(display_path(folder)),
    }


report = stage_asset("05_report", deps=[test], tool="matplotlib", metadata=metadata)
