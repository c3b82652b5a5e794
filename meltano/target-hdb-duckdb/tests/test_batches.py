"""BATCH messages: the rows of the files they name land in the run's one transaction, all of
them or none, and the state moves only once they have."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from target_hdb_duckdb.loader import LoaderError
from target_hdb_duckdb.target import IncompleteStreamError, load

SCHEMA = {
    "type": "SCHEMA",
    "stream": "sales",
    "schema": {
        "properties": {
            "month": {"type": ["string", "null"]},
            "price": {"type": ["string", "null"]},
            "_source": {"type": ["string", "null"]},
            "_source_row": {"type": ["integer", "null"]},
        }
    },
    "key_properties": [],
}
ROWS = [
    ("2023-01", "400000", "a.csv", 2),
    ("2023-01", "400000", "a.csv", 3),  # an identical sale: both are kept
    ("2023-01", None, "a.csv", 4),
    ("2023-02", "0410000.50", "b.csv", 2),  # text as delivered, leading zero and all
]


def write_batch(path: Path, rows: list[tuple], *, price_type: str = "varchar") -> str:
    """A Parquet batch file as the tap writes one, made here with DuckDB; its file:// URL."""
    values = ", ".join(
        f"({_sql(m)}, {_sql(p)}::{price_type}, {_sql(s)}, {n})" for m, p, s, n in rows
    )
    with duckdb.connect() as con:
        con.execute(
            f"copy (select * from (values {values}) as t(month, price, _source, _source_row)) "
            f"to '{path}' (format parquet)"
        )
    return path.as_uri()


def _sql(value: object) -> str:
    return "null" if value is None else f"'{value}'"


def batch(*urls: str, fmt: str = "parquet") -> str:
    return json.dumps(
        {
            "type": "BATCH",
            "stream": "sales",
            "encoding": {"format": fmt, "compression": "none"},
            "manifest": list(urls),
        }
    )


def closing_state(counts: dict[str, int]) -> str:
    months = {m: {"rows": n, "fingerprint": f"fp-{m}"} for m, n in counts.items()}
    return json.dumps({"type": "STATE", "value": {"bookmarks": {"sales": {"months": months}}}})


def raw_rows(db: Path) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(
            "select month, price, _source, _source_row from raw.sales order by all"
        ).fetchall()


def test_a_parquet_batch_lands_every_row_then_the_state_then_the_file_goes(
    tmp_path: Path,
) -> None:
    db = tmp_path / "w.duckdb"
    file = tmp_path / "batch.parquet"
    url = write_batch(file, ROWS)

    class StateOut(io.StringIO):
        """Output that checks, as the state is written, that the load has committed."""

        rows_when_state_written: list[tuple] | None = None

        def write(self, text: str) -> int:
            self.rows_when_state_written = raw_rows(db)
            return super().write(text)

    out = StateOut()
    counts = load(
        [json.dumps(SCHEMA), batch(url), closing_state({"2023-01": 3, "2023-02": 1})],
        {"database_path": str(db)},
        out,
    )
    assert counts == {"sales": 4}
    assert raw_rows(db) == sorted(ROWS, key=lambda r: tuple(str(v) for v in r))
    assert out.rows_when_state_written == raw_rows(db)  # committed before the state moved
    assert json.loads(out.getvalue())["bookmarks"]["sales"]["months"]["2023-02"]["rows"] == 1
    assert not file.exists()  # loaded and committed: removed
    with duckdb.connect(str(db), read_only=True) as con:
        months = con.execute(
            "select month, row_count, fingerprint, source from raw._load_months order by month"
        ).fetchall()
    assert months == [("2023-01", 3, "fp-2023-01", "a.csv"), ("2023-02", 1, "fp-2023-02", "b.csv")]


def test_a_batch_that_lost_rows_is_refused_and_nothing_moves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "w.duckdb"
    load([json.dumps(SCHEMA), closing_state({})], {"database_path": str(db)}, io.StringIO())
    file = tmp_path / "batch.parquet"
    url = write_batch(file, ROWS[1:])  # the tap sent 3 rows of 2023-01; the file holds 2
    out = io.StringIO()
    with (
        caplog.at_level(logging.ERROR),
        pytest.raises(IncompleteStreamError, match="2023-01: received 2, state says 3"),
    ):
        load(
            [json.dumps(SCHEMA), batch(url), closing_state({"2023-01": 3, "2023-02": 1})],
            {"database_path": str(db)},
            out,
        )
    assert raw_rows(db) == []
    assert out.getvalue() == ""  # no state: Meltano must not advance
    assert file.exists() and str(file) in caplog.text  # kept, and named, for a look


def test_a_failed_batch_leaves_the_warehouse_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    first = write_batch(tmp_path / "first.parquet", ROWS[:1])
    load(
        [json.dumps(SCHEMA), batch(first), closing_state({"2023-01": 1})],
        {"database_path": str(db)},
        io.StringIO(),
    )
    good = write_batch(tmp_path / "good.parquet", ROWS)
    numeric = write_batch(tmp_path / "bad.parquet", ROWS[3:], price_type="double")
    out = io.StringIO()
    with pytest.raises(LoaderError, match=r"column price is DOUBLE in the files .*bad\.parquet"):
        load(
            [json.dumps(SCHEMA), batch(good), batch(numeric), closing_state({"2023-01": 3})],
            {"database_path": str(db)},
            out,
        )
    assert raw_rows(db) == [ROWS[0]]
    assert out.getvalue() == ""
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("select count(*) from raw._loads").fetchone() == (1,)


def test_a_state_before_the_last_batch_is_not_the_end_of_the_run(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    load([json.dumps(SCHEMA), closing_state({})], {"database_path": str(db)}, io.StringIO())
    url = write_batch(tmp_path / "b.parquet", ROWS)
    lines = [json.dumps(SCHEMA), closing_state({"2023-01": 3, "2023-02": 1}), batch(url)]
    with pytest.raises(IncompleteStreamError, match="closing STATE"):
        load(lines, {"database_path": str(db)}, io.StringIO())
    assert raw_rows(db) == []


def test_a_missing_or_remote_batch_file_is_named(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    gone = (tmp_path / "gone.parquet").as_uri()
    with pytest.raises(LoaderError, match=r"gone\.parquet does not exist"):
        load(
            [json.dumps(SCHEMA), batch(gone), closing_state({})],
            {"database_path": str(db)},
            io.StringIO(),
        )
    with pytest.raises(LoaderError, match="not on this machine"):
        load(
            [json.dumps(SCHEMA), batch("s3://bucket/b.parquet"), closing_state({})],
            {"database_path": str(db)},
            io.StringIO(),
        )


def test_a_gzip_jsonl_batch_as_singer_sdk_writes_one_loads_too(tmp_path: Path) -> None:
    import gzip

    db = tmp_path / "w.duckdb"
    file = tmp_path / "batch.json.gz"
    names = ("month", "price", "_source", "_source_row")
    with gzip.open(file, "wt") as handle:
        for row in ROWS:
            handle.write(json.dumps(dict(zip(names, row, strict=True))) + "\n")
    load(
        [
            json.dumps(SCHEMA),
            batch(file.as_uri(), fmt="jsonl"),
            closing_state({"2023-01": 3, "2023-02": 1}),
        ],
        {"database_path": str(db)},
        io.StringIO(),
    )
    assert raw_rows(db) == sorted(ROWS, key=lambda r: tuple(str(v) for v in r))

    extra = tmp_path / "extra.json.gz"
    with gzip.open(extra, "wt") as handle:
        handle.write(json.dumps({"month": "2023-03", "surprise": "x"}) + "\n")
    with pytest.raises(LoaderError, match="fields not in its SCHEMA: \\['surprise'\\]"):
        load(
            [json.dumps(SCHEMA), batch(extra.as_uri(), fmt="jsonl"), closing_state({"2023-03": 1})],
            {"database_path": str(db)},
            io.StringIO(),
        )


def test_a_loader_killed_with_a_batch_inserted_but_not_committed_leaves_nothing(
    tmp_path: Path,
) -> None:
    """SIGKILL while the batch's rows sit in the open transaction (the BATCH was read, the
    tap's closing STATE not yet): nothing lands, no state is written, the file stays."""
    db = tmp_path / "w.duckdb"
    load([json.dumps(SCHEMA), closing_state({})], {"database_path": str(db)}, io.StringIO())
    file = tmp_path / "batch.parquet"
    url = write_batch(file, ROWS)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"database_path": str(db)}))
    target = subprocess.Popen(
        [sys.executable, "-m", "target_hdb_duckdb.target", "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    target.stdin.write((json.dumps(SCHEMA) + "\n" + batch(url) + "\n").encode())
    target.stdin.flush()
    said = target.stderr.readline().decode()  # the loader says once it has inserted the rows
    assert "Inserted 4 rows from the batch file" in said, said
    os.kill(target.pid, signal.SIGKILL)  # the closing STATE never comes
    target.wait(timeout=30)
    assert target.stdout.read() == b""  # no state
    assert raw_rows(db) == []
    assert file.exists()
