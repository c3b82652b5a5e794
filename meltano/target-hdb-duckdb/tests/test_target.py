"""The loader keeps every row it is sent, or none of them."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from target_hdb_duckdb.loader import LoaderError
from target_hdb_duckdb.target import IncompleteStreamError, load

TEXT_SCHEMA = {
    "type": "SCHEMA",
    "stream": "things",
    "schema": {"properties": {"a": {"type": ["string", "null"]}, "b": {"type": "string"}}},
    "key_properties": [],
}


NO_STATE: dict = {}  # sentinel: send no closing STATE


def messages(rows: list[dict], *, final_state: dict | None = None) -> list[str]:
    out = [json.dumps(TEXT_SCHEMA)]
    out += [json.dumps({"type": "RECORD", "stream": "things", "record": r}) for r in rows]
    if final_state is not NO_STATE:
        out.append(json.dumps({"type": "STATE", "value": final_state or {"done": 1}}))
    return out


def tables_in(db: Path) -> list[str]:
    with duckdb.connect(str(db), read_only=True) as con:
        return [
            r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
        ]


def table_rows(db: Path, table: str = "raw.things") -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(f"select a, b from {table} order by b").fetchall()


@pytest.mark.parametrize("batch_rows", [1, 3, 7, 50_000])
def test_all_text_stream_loses_no_row_in_any_batch(tmp_path: Path, batch_rows: int) -> None:
    # The first record of every batch is where a headerless COPY drops rows: check each one.
    rows = [{"a": f"x{i}", "b": f"{i:03d}"} for i in range(20)]
    db = tmp_path / "w.duckdb"
    out = io.StringIO()
    counts = load(messages(rows), {"database_path": str(db), "batch_size_rows": batch_rows}, out)
    assert counts == {"things": 20}
    assert table_rows(db) == [(r["a"], r["b"]) for r in rows]
    assert json.loads(out.getvalue()) == {"done": 1}


def test_identical_rows_are_all_kept(tmp_path: Path) -> None:
    rows = [{"a": "same", "b": "1"}] * 4 + [{"a": None, "b": "2"}]
    db = tmp_path / "w.duckdb"
    load(messages(rows), {"database_path": str(db), "batch_size_rows": 2}, io.StringIO())
    assert table_rows(db) == [("same", "1")] * 4 + [(None, "2")]


def test_input_without_closing_state_loads_nothing(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    load(messages([{"a": "old", "b": "0"}]), {"database_path": str(db)}, io.StringIO())
    out = io.StringIO()
    broken = messages([{"a": "new", "b": str(i)} for i in range(5)], final_state=NO_STATE)
    with pytest.raises(IncompleteStreamError, match="closing STATE"):
        load(broken, {"database_path": str(db), "batch_size_rows": 2}, out)
    assert table_rows(db) == [("old", "0")]
    assert out.getvalue() == ""  # no state: Meltano must not advance


def test_state_before_last_record_is_not_completion(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    lines = messages([{"a": "1", "b": "1"}], final_state={"mid": 1})
    lines.append(json.dumps({"type": "RECORD", "stream": "things", "record": {"a": "2"}}))
    with pytest.raises(IncompleteStreamError):
        load(lines, {"database_path": str(db)}, io.StringIO())
    assert tables_in(db) == []  # even the schema and tables were rolled back


def test_bad_json_rolls_back(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    lines = messages([{"a": "1", "b": "1"}])
    lines.insert(2, "{not json")
    with pytest.raises(LoaderError, match="line 3 is not JSON"):
        load(lines, {"database_path": str(db)}, io.StringIO())
    assert tables_in(db) == []  # even the schema and tables were rolled back


def test_record_with_unknown_field_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="not in its SCHEMA"):
        load(
            messages([{"a": "1", "b": "1", "c": "?"}]),
            {"database_path": str(tmp_path / "w.duckdb")},
            io.StringIO(),
        )


def test_each_run_is_a_new_load_with_increasing_time(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    for _ in range(3):
        load(messages([{"a": "1", "b": "1"}]), {"database_path": str(db)}, io.StringIO())
    with duckdb.connect(str(db)) as con:
        loads = con.execute(
            "select load_id, started_at, row_count from raw._loads order by started_at"
        ).fetchall()
        per_load = con.execute(
            "select _load_id, min(_loaded_at), count(*) from raw.things group by all order by 2"
        ).fetchall()
    assert len({row[0] for row in loads}) == 3
    assert [row[1] for row in loads] == sorted({row[1] for row in loads})
    assert per_load == [(lid, started, 1) for lid, started, _ in loads]


def test_months_are_recorded_for_a_month_column(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    schema = {**TEXT_SCHEMA, "schema": {"properties": {"month": {"type": "string"}}}}
    lines = [json.dumps(schema)]
    lines += [
        json.dumps({"type": "RECORD", "stream": "things", "record": {"month": m}})
        for m in ["2023-02", "2023-01", "2023-02"]
    ]
    lines.append(
        json.dumps({"type": "STATE", "value": month_state(things={"2023-01": 1, "2023-02": 2})})
    )
    load(lines, {"database_path": str(db)}, io.StringIO())
    with duckdb.connect(str(db)) as con:
        assert con.execute("select months, row_count from raw._loads").fetchone() == (
            ["2023-01", "2023-02"],
            3,
        )


def test_new_columns_widen_the_table(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    load(messages([{"a": "1", "b": "1"}]), {"database_path": str(db)}, io.StringIO())
    wider = {
        **TEXT_SCHEMA,
        "schema": {"properties": {"b": {"type": "string"}, "n": {"type": "integer"}}},
    }
    lines = [
        json.dumps(wider),
        json.dumps({"type": "RECORD", "stream": "things", "record": {"b": "2", "n": 7}}),
    ]
    lines.append(json.dumps({"type": "STATE", "value": {}}))
    load(lines, {"database_path": str(db)}, io.StringIO())
    with duckdb.connect(str(db)) as con:
        assert con.execute("select a, b, n from raw.things order by b").fetchall() == [
            ("1", "1", None),
            (None, "2", 7),
        ]


def test_command_line_exits_non_zero_on_incomplete_input(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"database_path": str(tmp_path / "w.duckdb")}))
    result = subprocess.run(
        [sys.executable, "-m", "target_hdb_duckdb.target", "--config", str(config)],
        input="\n".join(messages([{"a": "1", "b": "1"}], final_state=NO_STATE)),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "closing STATE" in result.stderr
    assert result.stdout == ""


def month_state(**streams: dict[str, int]) -> dict:
    """A closing state in tap-hdb-resale's shape: rows per month per stream."""
    return {
        "bookmarks": {
            stream: {"months": {m: {"rows": n} for m, n in months.items()}}
            for stream, months in streams.items()
        }
    }


def month_records(counts: dict[str, int]) -> list[str]:
    schema = {
        **TEXT_SCHEMA,
        "schema": {"properties": {"month": {"type": "string"}, "b": {"type": "string"}}},
    }
    lines = [json.dumps(schema)]
    for month, n in counts.items():
        lines += [
            json.dumps(
                {"type": "RECORD", "stream": "things", "record": {"month": month, "b": str(i)}}
            )
            for i in range(n)
        ]
    return lines


def test_closing_state_that_confirms_each_month_commits(tmp_path: Path) -> None:
    db = tmp_path / "w.duckdb"
    lines = month_records({"2023-11": 3, "2023-12": 2})
    lines.append(
        json.dumps({"type": "STATE", "value": month_state(things={"2023-11": 3, "2023-12": 2})})
    )
    assert load(lines, {"database_path": str(db)}, io.StringIO()) == {"things": 5}


def test_state_written_on_termination_does_not_confirm_a_cut_month(tmp_path: Path) -> None:
    # singer-sdk writes its current (old) state when terminated mid-month: the last month
    # received is incomplete, and the old state's count for it cannot match.
    db = tmp_path / "w.duckdb"
    old = month_state(things={"2023-11": 3, "2023-12": 4})
    lines = month_records({"2023-11": 3, "2023-12": 2})
    lines.append(json.dumps({"type": "STATE", "value": old}))
    out = io.StringIO()
    with pytest.raises(IncompleteStreamError, match=r"2023-12: received 2, state says 4"):
        load(lines, {"database_path": str(db)}, out)
    assert out.getvalue() == ""
    assert tables_in(db) == []


def test_an_old_raw_table_gains_the_dataset_id_and_keeps_null_values(tmp_path: Path) -> None:
    """A warehouse made before records carried ``_dataset_id``: the column is added (old rows
    keep null there, for the workbook's migration to fill), and a value a resource lacks,
    sent as null, is stored as NULL, not as text."""
    db = tmp_path / "w.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create schema raw")
        con.execute(
            "create table raw.resale_flat_prices (month varchar, remaining_lease varchar, "
            "_source varchar, _source_row bigint, _load_id varchar, _loaded_at timestamp)"
        )
        con.execute(
            "insert into raw.resale_flat_prices values "
            "('2023-01', '61 years', 'a.csv', 2, 'old', '2024-01-01')"
        )
    nullable = {"type": ["string", "null"]}
    schema = {
        "type": "SCHEMA",
        "stream": "resale_flat_prices",
        "schema": {
            "properties": {
                "month": nullable,
                "remaining_lease": nullable,
                "_source": nullable,
                "_source_row": {"type": ["integer", "null"]},
                "_dataset_id": nullable,
            }
        },
        "key_properties": [],
    }
    record = {"month": "1995-03", "remaining_lease": None, "_source": "b.csv",
              "_source_row": 2, "_dataset_id": "d_ebc5ab87086db484f88045b47411ebc5"}  # fmt: skip
    lines = [
        json.dumps(schema),
        json.dumps({"type": "RECORD", "stream": "resale_flat_prices", "record": record}),
        json.dumps({"type": "STATE", "value": {}}),
    ]
    load(lines, {"database_path": str(db), "verify_month_counts": False}, io.StringIO())
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "select month, remaining_lease, _dataset_id from raw.resale_flat_prices order by month"
        ).fetchall()
    assert rows == [
        ("1995-03", None, "d_ebc5ab87086db484f88045b47411ebc5"),
        ("2023-01", "61 years", None),
    ]
