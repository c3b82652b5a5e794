"""Small helpers the stages share to describe what a run did: tables, months, check windows."""

from __future__ import annotations

import pandas as pd
from dagster import AssetCheckExecutionContext, MetadataValue

from dagster_orchestration.partitions import run_months
from dagster_orchestration.resources import HdbSettings
from hdb_elt.settings import Settings


def markdown_table(frame: pd.DataFrame, rows: int = 30) -> MetadataValue:
    """A frame as a markdown table (the first ``rows`` rows), for the UI's metadata panel."""
    shown = frame.head(rows)
    text = shown.to_markdown(index=False) if not shown.empty else "_(no rows)_"
    if len(frame) > rows:
        text += f"\n\n… and {len(frame) - rows:,} more rows."
    return MetadataValue.md(text)


def check_settings(context: AssetCheckExecutionContext, settings: HdbSettings) -> Settings:
    """The settings of the run a check belongs to (its months come from the run's tags)."""
    return settings.for_months(*run_months(context.run.tags))
