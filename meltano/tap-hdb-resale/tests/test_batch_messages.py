"""Files mode with ``batch_config``: one Parquet file named by a BATCH message instead of a
RECORD message per row, holding exactly the records the tap would have sent."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path
from urllib.parse import urlparse

import pyarrow.parquet as pq
from tap_helpers import run_tap, sale, write_csv

from tap_hdb_resale.tap import TapHdbResale


def batch_config(root: Path, fmt: str = "parquet") -> dict:
    return {
        "encoding": {"format": fmt, "compression": "none"},
        "storage": {"root": root.as_uri()},
    }


def run_batches(config: dict, state: dict | None = None) -> list[dict]:
    tap = TapHdbResale(config=config, state=state or {})
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        tap.sync_all()
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def deliveries(folder: Path) -> Path:
    folder.mkdir()
    write_csv(folder / "resale-flat-prices-2023-01.csv", [sale("2023-01", i) for i in range(3)])
    twins = [sale("2023-02", 1), sale("2023-02", 1), sale("2023-02", 2, town="BEDOK")]
    write_csv(folder / "resale-flat-prices-2023-02.csv", twins)
    return folder


def test_the_batch_holds_exactly_the_records_and_the_state_follows_it(tmp_path: Path) -> None:
    folder = deliveries(tmp_path / "in")
    config = {"data_dir": str(folder), "start_month": "2023-01", "end_month": "2023-02"}
    records = run_tap(config)

    messages = run_batches({**config, "batch_config": batch_config(tmp_path / "batches")})
    types = [m["type"] for m in messages]
    assert "RECORD" not in types
    assert types[-2:] == ["BATCH", "STATE"]  # the months are claimed after their rows
    assert all("months" not in json.dumps(m) for m in messages[: types.index("BATCH")])
    (url,) = messages[-2]["manifest"]
    assert messages[-2]["encoding"]["format"] == "parquet"
    rows = pq.read_table(urlparse(url).path).to_pylist()
    assert rows == records.records  # every row, twins included, in order, as text
    assert messages[-1]["value"]["bookmarks"]["resale_flat_prices"]["months"] == records.months


def test_nothing_new_sends_no_batch_but_a_closing_state(tmp_path: Path) -> None:
    folder = deliveries(tmp_path / "in")
    config = {
        "data_dir": str(folder),
        "start_month": "2023-01",
        "end_month": "2023-02",
        "batch_config": batch_config(tmp_path / "batches"),
    }
    first = run_batches(config)
    again = run_batches(config, state=first[-1]["value"])
    assert [m["type"] for m in again if m["type"] != "SCHEMA"][-1] == "STATE"
    assert "BATCH" not in [m["type"] for m in again]
    assert len(list((tmp_path / "batches").iterdir())) == 1  # the first run's, for its loader


def test_api_mode_sends_records_even_with_a_batch_config(tmp_path: Path) -> None:
    config = {"start_month": "2023-03", "end_month": "2023-03"}
    with_batches = {**config, "batch_config": batch_config(tmp_path)}
    api = TapHdbResale(config=with_batches).streams["resale_flat_prices"]
    files = TapHdbResale(config={**with_batches, "data_dir": str(tmp_path)})
    assert api.get_batch_config(api.config) is None
    assert files.streams["resale_flat_prices"].get_batch_config(files.config) is not None
