"""Where a raw row came from, in words a person finds it by: ``file.csv line 14`` for a
delivery file, ``host/path record 14`` for a data.gov.sg API request."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pandas as pd


def basename(source: object) -> str:
    """The file name of a delivery path; for an API request URL, its host and path."""
    text = str(source)
    if text.startswith(("http://", "https://")):
        url = urlparse(text)
        return f"{url.netloc}{url.path}"
    return Path(text).name


def describe_source(source: object) -> str:
    """A delivery's file name, saying whether the file is still there (an API URL: its host
    and path)."""
    if source is None:
        return "unknown"
    text = str(source)
    if text.startswith(("http://", "https://")):
        return basename(text)
    state = "still in the deliveries folder" if Path(text).exists() else "no longer there"
    return f"{basename(text)}, {state}"


def row_location(source: object, source_row: object) -> str:
    """``file.csv line 14`` for a delivery file, ``host/path record 14`` for an API request."""
    if source is None or source_row is None or pd.isna(source_row):
        return ""
    unit = "record" if str(source).startswith(("http://", "https://")) else "line"
    return f"{basename(source)} {unit} {int(source_row)}"
