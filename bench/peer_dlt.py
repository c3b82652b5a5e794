"""dlt's Arrow path, a peer in ``make bench``: the CSV deliveries of a window into a DuckDB file.

    <dlt venv>/bin/python bench/peer_dlt.py DATA_DIR DATABASE START END WORK_DIR

Run by ``bench.peers`` in dlt's own virtual environment (never the project's): each file read
with pyarrow, every column as text, the rows of the window kept with their file's name, and
handed to dlt as Arrow tables (its fastest path). Prints one JSON object: the rows landed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dlt
import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv


def tables(files: list[Path], start: str, end: str):
    for path in files:
        with path.open(encoding="utf-8-sig") as handle:
            header = [name.strip() for name in handle.readline().strip().split(",")]
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header}, strings_can_be_null=False
            ),
        )
        month = table.column("month")
        table = table.filter(pc.and_(pc.greater_equal(month, start), pc.less_equal(month, end)))
        yield table.append_column("_source", pa.array([str(path)] * table.num_rows, pa.string()))


def main() -> None:
    data_dir, database, start, end, work = sys.argv[1:6]
    files = sorted(p for p in Path(data_dir).iterdir() if p.name.lower().endswith(".csv"))
    pipeline = dlt.pipeline(
        pipeline_name="hdb_bench_peer",
        destination=dlt.destinations.duckdb(database),
        dataset_name="raw",
        pipelines_dir=work,
    )
    pipeline.run(
        tables(files, start, end), table_name="resale_flat_prices", write_disposition="append"
    )
    with duckdb.connect(database, read_only=True) as con:
        (rows,) = con.execute("select count(*) from raw.resale_flat_prices").fetchone()
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
