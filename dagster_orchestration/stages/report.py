"""Stage 5: report (charts and a summary from the marts)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from dagster import MetadataValue

from dagster_orchestration.dagstermill_assets import stage_asset
from dagster_orchestration.stages.test import test
from hdb_elt.settings import Settings, display_path

CHART = "price_by_flat_type.png"


def _image(path: Path, title: str) -> MetadataValue:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return MetadataValue.md(f"![{title}](data:image/png;base64,{data})")


def metadata(settings: Settings) -> dict[str, Any]:
    # Imported here, not at the top: every notebook kernel imports this module while dagstermill
    # rebuilds the run's context in it, and matplotlib (which these modules import) costs each
    # of the four other kernels about half a second for nothing.
    from hdb_elt.long_run import CHART_FILE as LONG_RUN_CHART
    from hdb_elt.report import SUMMARY_FILE, report_dir

    folder = report_dir(settings.warehouse_path)
    recorded = {
        "summary": MetadataValue.md((folder / SUMMARY_FILE).read_text(encoding="utf-8")),
        "chart": _image(folder / CHART, "Resale prices by flat type"),
        "report folder": MetadataValue.path(display_path(folder)),
    }
    # A notebook 05 a learner trimmed may not draw the long run: the rest is still recorded.
    if (folder / LONG_RUN_CHART).is_file():
        recorded["long run"] = _image(folder / LONG_RUN_CHART, "Median price per sqm by region")
    return recorded


report = stage_asset("05_report", deps=[test], tool="matplotlib", metadata=metadata)
