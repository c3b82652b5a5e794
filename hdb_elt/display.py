"""How the notebooks show tables to a learner: readable numbers, whole texts, narrow previews.

pandas cuts a cell's text at 50 characters and prints a price as ``282000.0``. These helpers
return what a notebook shows instead: :func:`markdown_table` (JupyterLab wraps its cells, and
nbval compares it as text), :func:`readable` (numbers with thousands separators, whole prices
without ``.0``) and :func:`results_table` (each rule's first failure in words, not JSON).
"""

from __future__ import annotations

import json

import pandas as pd
from IPython.display import Markdown


def _numbers(series: pd.Series) -> pd.Series:
    """A numeric column as text: whole numbers if every value is whole (``282,000``), else
    every value with two decimals (``6,440.00`` beside ``6,068.18``)."""
    values = series.astype(object)
    present = [v for v in values if v is not None and v is not pd.NA and v == v]
    whole = all(float(v).is_integer() for v in present)
    pattern = "{:,.0f}" if whole else "{:,.2f}"
    return values.map(
        lambda v: "" if v is None or v is pd.NA or v != v else pattern.format(float(v))
    )


def readable(frame: pd.DataFrame, *, percent: tuple[str, ...] = ("share",)) -> pd.DataFrame:
    """The frame with its numbers as people write them: ``282,000``, ``2,552``, ``4,952.37``
    (years as they are), the ``percent`` columns (shares of a whole) as ``2.3%``; dates as
    ``2023-01-01``. Text columns are left as they are."""
    shown = frame.copy()
    for column in shown.columns:
        series = shown[column]
        if pd.api.types.is_bool_dtype(series):
            continue
        if column in percent and pd.api.types.is_numeric_dtype(series):
            shown[column] = series.map(lambda v: "" if v != v else f"{v:.1%}")
            continue
        if pd.api.types.is_numeric_dtype(series) and not _is_year(str(column)):
            shown[column] = _numbers(series)
        elif pd.api.types.is_datetime64_any_dtype(series):
            shown[column] = series.dt.strftime("%Y-%m-%d")
    return shown


def _is_year(column: str) -> bool:
    # 1978 is a year, not one thousand nine hundred and seventy-eight: no separator.
    return "year" in column or column.endswith("_date")


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    # A pipe would end the cell; JupyterLab reads the text between two dollars as maths.
    return text.replace("|", "\\|").replace("$", "\\$").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> Markdown:
    """The frame as a markdown table: every text whole (JupyterLab wraps long cells), numbers
    readable, no index."""
    shown = readable(frame)
    columns = [str(c) for c in shown.columns]
    lines = [
        "| " + " | ".join(_cell(c) for c in columns) + " |",
        "|" + "|".join("---:" if _numeric(frame[c]) else "---" for c in frame.columns) + "|",
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in shown.itertuples(False)]
    return Markdown("\n".join(lines))


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def first_failure(sample: str) -> str:
    """A rule's sample (JSON: the first failing rows with file, line and value) in words:
    ``resale-flat-prices-2023-02.csv line 2: block 'ANG MO KIO AVE 3'``."""
    items = json.loads(sample or "[]")
    if not items:
        return ""
    first = dict(items[0])
    where = " line ".join(str(first.pop(k)) for k in ("file", "line") if k in first)
    what = ", ".join(
        str(value) if key == "detail" else f"{key} {value!r}" for key, value in first.items()
    )
    text = f"{where}: {what}" if where and what else where or what
    return text + (f" (and {len(items) - 1} more shown in sample)" if len(items) > 1 else "")


def results_table(results: pd.DataFrame) -> Markdown:
    """A validation report's results, one line per rule, its first failure in words."""
    shown = results.drop(columns=["sample"]).assign(
        first_failure=results["sample"].map(first_failure)
    )
    return markdown_table(shown)
