"""Deliveries read column by column with pyarrow: the same rows, checks and fingerprints as
``deliveries.read_delivery``, without a Python object per value.

Files mode reads each delivery once into an Arrow table (the eleven columns as text, null for
a column its resource lacks, and ``_source_row``, the CSV line) and checks whole columns at a
time. The fast path takes the files data.gov.sg and ``make data`` write: no quote characters,
one row a line, UTF-8. Anything else (quoted fields, a blank line, a lone carriage return, a
value a check refuses) is read by the row-by-row reader instead, which accepts it or refuses it
naming the file, line, column and rule; so both paths accept exactly the same files, and every
error message comes from one place.
"""

from __future__ import annotations

import codecs
import hashlib
import logging
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from tap_hdb_resale.deliveries import (
    DeliveryError,
    Row,
    check_header,
    check_resource,
    fingerprint,
    month_in_name,
    read_bytes,
    read_delivery,
)
from tap_hdb_resale.formats import NUMERIC_COLUMNS
from tap_hdb_resale.months import MonthError, parse_month
from tap_hdb_resale.resources import COLUMNS

LINE = "_source_row"
# The table of a delivery: the eleven source columns as text, then the CSV line of each row.
SCHEMA = pa.schema([*((column, pa.string()) for column in COLUMNS), (LINE, pa.int64())])
# RE2's \d is ASCII only: stricter than Python's, so a value it doubts goes to the row reader,
# which applies the rule itself (formats.value_problem).
_NUMBER = r"^-?[0-9]+(\.[0-9]+)?$"
# A table whose values need no escaping in JSON (json.dumps escapes '"', '\\' and control
# characters) is marked so in its schema's metadata: its fingerprint lines are built by joining
# columns. The bytes such a file may hold: any but those (line ends end rows, never values).
PLAIN = {b"json_plain": b"true"}
_PLAIN_BYTES = bytes(b for b in range(256) if b >= 0x20 and b not in b'"\\') + b"\r\n"

logger = logging.getLogger(__name__)


def read_table(path, log: logging.Logger = logger) -> pa.Table:
    """Read and check one CSV delivery: its rows as a table of :data:`SCHEMA`.

    Accepts and refuses exactly what :func:`deliveries.read_delivery` does; a file the
    columnar reader cannot vouch for is read by it, row by row.
    """
    table = _read_columnar(path, log)
    if table is None:
        table = rows_table(read_delivery(path, log))
    return table


def rows_table(rows: Sequence[Row]) -> pa.Table:
    """Rows of the row-by-row reader as a table of :data:`SCHEMA`."""
    columns = list(zip(*(row.values for row in rows), strict=True)) or [()] * len(COLUMNS)
    arrays = [pa.array(values, pa.string()) for values in columns]
    arrays.append(pa.array([row.line for row in rows], pa.int64()))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _read_columnar(path, log: logging.Logger) -> pa.Table | None:
    """The delivery as a table, or None when the row-by-row reader must decide."""
    name = path.name
    name_month = month_in_name(name)
    data = read_bytes(path).removeprefix(codecs.BOM_UTF8)
    if b'"' in data or (b"\r" in data and data.count(b"\r") != data.count(b"\r\n")):
        return None  # quoting, or old Mac line ends: the csv module's rules apply
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    header_end = data.find(b"\n")
    header_line = data[: header_end if header_end >= 0 else len(data)].decode().rstrip("\r")
    if not header_line:
        return None
    header = header_line.split(",")
    index = check_header(name, header, log, warn=False)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") else 1)
    rows = lines - 1
    if rows < 1:
        return None
    positions = sorted(index.values())
    try:
        read = pacsv.read_csv(
            pa.py_buffer(data[header_end + 1 :]),
            read_options=pacsv.ReadOptions(column_names=[f"f{i}" for i in range(len(header))]),
            # No quote character (there is none). A blank line is skipped, and then the count
            # of rows falls short of the count of lines: the row reader decides.
            parse_options=pacsv.ParseOptions(quote_char=False),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in positions},
                include_columns=[f"f{i}" for i in positions],
                strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None  # a row with too few or too many fields
    if read.num_rows != rows:
        return None
    table = pa.Table.from_arrays(
        [
            read.column(f"f{index[column]}") if column in index else pa.nulls(rows, pa.string())
            for column in COLUMNS
        ]
        + [pa.array(range(2, rows + 2), pa.int64())],
        schema=SCHEMA,
    )
    if not _passes_checks(name, name_month, table, frozenset(index)):
        return None
    if len(index) < len(header):
        check_header(name, header, log)  # now names the columns it leaves out, once
    return table.replace_schema_metadata(PLAIN) if not data.translate(None, _PLAIN_BYTES) else table


def _passes_checks(name: str, name_month: str | None, table: pa.Table, present) -> bool:
    """Whether every row passes the rules the row reader applies (formats.value_problem, the
    month in the file name, the resource of each month); False lets it name the first row
    that does not."""
    months = pc.unique(table.column("month")).to_pylist()
    try:
        for month in months:
            parse_month(month)
            check_resource(name, 0, month, present)
    except (MonthError, DeliveryError):
        return False
    if name_month is not None and months != [name_month]:
        return False
    return all(
        pc.all(pc.match_substring_regex(table.column(column), _NUMBER)).as_py() is not False
        for column in NUMERIC_COLUMNS
    )


def split_months(table: pa.Table) -> dict[str, pa.Table]:
    """The delivery's rows by month, each month's in delivery order, months in order of
    their first row."""
    months = pc.unique(table.column("month")).to_pylist()
    if len(months) == 1:
        return {months[0]: table}
    column = table.column("month")
    return {month: table.filter(pc.equal(column, month)) for month in months}


def fingerprints(tables: Sequence[pa.Table]) -> list[str]:
    """:func:`deliveries.fingerprint` of each table's rows: the SHA-256 of each row's values
    as a JSON list, one a line.

    The lines of plain tables (:data:`PLAIN`) whose columns are each wholly text or wholly
    null (a column the resource lacks) are built by one join of columns per such shape: a
    compute call per table would cost more than the hashing. Any other table's, row by row.
    """
    found: dict[int, str] = {}
    shapes: dict[tuple[bool, ...], list[int]] = {}
    for i, table in enumerate(tables):
        nulls = [table.column(column).null_count for column in COLUMNS]
        if table.schema.metadata != PLAIN or any(0 < n < table.num_rows for n in nulls):
            found[i] = table_fingerprint(table)
        elif table.num_rows:
            shapes.setdefault(tuple(n > 0 for n in nulls), []).append(i)
        else:
            found[i] = hashlib.sha256().hexdigest()
    for shape, members in shapes.items():
        lines = _json_lines([tables[i] for i in members], shape)
        data = memoryview(lines.buffers()[2])
        offsets = memoryview(lines.buffers()[1]).cast("q")[lines.offset :]
        row = 0
        for i in members:
            end = row + tables[i].num_rows
            found[i] = hashlib.sha256(data[offsets[row] : offsets[end]]).hexdigest()
            row = end
    return [found[i] for i in range(len(tables))]


def _json_lines(tables: Sequence[pa.Table], null: Sequence[bool]) -> pa.Array:
    """Each row of ``tables`` as ``json.dumps(values) + "\\n"``: the values between quotes,
    or ``null`` in the columns marked ``null``, joined by ``", "``, in brackets."""
    rows = pa.concat_tables([table.select(COLUMNS) for table in tables])
    pieces: list = []
    text = "["
    for column, is_null in zip(COLUMNS, null, strict=True):
        text += ", " if pieces or text != "[" else ""
        if is_null:
            text += "null"
            continue
        values = rows.column(column).cast(pa.large_string()).combine_chunks()
        pieces += [_scalar(text + '"'), values]
        text = '"'
    pieces.append(_scalar(text + "]\n"))
    return pc.binary_join_element_wise(*pieces, _scalar(""))


def _scalar(text: str) -> pa.Scalar:
    return pa.scalar(text, pa.large_string())


def table_fingerprint(table: pa.Table) -> str:
    """:func:`deliveries.fingerprint` of one table's rows, row by row."""
    values = [table.column(column).to_pylist() for column in COLUMNS]
    return fingerprint([Row(0, tuple(row)) for row in zip(*values, strict=True)])
