"""The columnar reader accepts and refuses exactly what the row-by-row reader does, with the
same rows, lines and fingerprints: the fast path changes the speed, never the result."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest
from tap_helpers import FIXTURES, sale

from tap_hdb_resale.columnar import PLAIN, fingerprints, read_table, rows_table
from tap_hdb_resale.deliveries import COLUMNS, DeliveryError, fingerprint, read_delivery

HEADER = ",".join(COLUMNS)
OLD_HEADER = ",".join(c for c in COLUMNS if c != "remaining_lease")


def line(month: str, number: int, **changes: str) -> str:
    return ",".join(sale(month, number, **changes).values())


def old_line(month: str, number: int) -> str:
    values = sale(month, number)
    del values["remaining_lease"]
    return ",".join(values.values())


def text(*lines: str, header: str = HEADER, end: str = "\n") -> str:
    return end.join([header, *lines]) + end


QUOTE, NEWLINE = chr(34), chr(10)
# name -> file text; the ones marked * leave the fast path for the row reader.
ACCEPTED = {
    "plain": text(line("2023-01", 1), line("2023-01", 2)),
    "no final line break": text(line("2023-01", 1)).rstrip(),
    "crlf and bom": "\ufeff" + text(line("2023-01", 1), end="\r\n"),
    "reordered and extra columns": text(
        "x," + ",".join(reversed(line("2023-01", 1).split(","))),
        header="extra," + ",".join(reversed(COLUMNS)),
    ),
    "old format": text(old_line("2001-03", 1), old_line("2001-04", 2), header=OLD_HEADER),
    "several months": text(line("2023-02", 1), line("2023-01", 2), line("2023-02", 3)),
    "non-ascii": text(line("2023-01", 1, street_name="JALAN BÉSAR")),
    "empty value": text(line("2023-01", 1, flat_model="")),
    "* quoted field": text(line("2023-01", 1, street_name=QUOTE + "A, B" + QUOTE)),
    "* backslash": text(line("2023-01", 1, block="10\\2")),
    "* tab in value": text(line("2023-01", 1, block="10\t2")),
    "* blank line": text(line("2023-01", 1), "", line("2023-01", 2)),
    "* old mac line ends": text(line("2023-01", 1), line("2023-01", 2), end="\r"),
    "* trailing blank line": text(line("2023-01", 1)) + "\n",
    "* quoted line break": text(
        line("2023-01", 1, street_name=QUOTE + "A" + NEWLINE + "B" + QUOTE)
    ),
}
REFUSED = {
    "short row": text(line("2023-01", 1), "2023-01,ANG MO KIO"),
    "long row": text(line("2023-01", 1) + ",x"),
    "price not a number": text(line("2023-01", 1), line("2023-01", 2, resale_price="4e5")),
    "bad month": text(line("2023-01", 1), line("2023-13", 2)),
    "month before 1990": text(line("1989-12", 1)),
    "lease column in an old month": text(line("2001-03", 1)),
    "no rows": text(),
    "empty": "",
    "missing column": text(header=OLD_HEADER.replace("town,", "")),
}


def write(tmp_path: Path, name: str, text: str, *, gz: bool = False) -> Path:
    path = tmp_path / ("resale-flat-prices.csv" + (".gz" if gz else ""))
    data = text.encode("utf-8")
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("name", list(ACCEPTED))
def test_the_same_rows_lines_and_fingerprints(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, ACCEPTED[name], gz=name == "plain")
    rows = read_delivery(path)
    table = read_table(path)
    assert table.to_pylist() == rows_table(rows).to_pylist()
    assert fingerprints([table]) == [fingerprint(rows)]
    # The fast path took the file unless it is one of those marked for the row reader.
    assert (table.schema.metadata == PLAIN) == (not name.startswith("*"))


def test_fingerprints_of_many_months_at_once_are_each_month_s(tmp_path: Path) -> None:
    tables, expected = [], []
    for name in ("plain", "old format", "non-ascii", "* backslash", "empty value"):
        path = write(tmp_path, name, ACCEPTED[name])
        tables.append(read_table(path))
        expected.append(fingerprint(read_delivery(path)))
    assert fingerprints(tables) == expected


@pytest.mark.parametrize("name", list(REFUSED))
def test_the_same_refusal_naming_file_line_column_and_rule(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, REFUSED[name])
    with pytest.raises(DeliveryError) as by_rows:
        read_delivery(path, logging.getLogger("rows"))
    with pytest.raises(DeliveryError) as by_columns:
        read_table(path, logging.getLogger("columns"))
    assert str(by_columns.value) == str(by_rows.value)
    assert "(rule: " in str(by_columns.value)


def test_the_fixture_deliveries_take_the_fast_path() -> None:
    for path in sorted((FIXTURES / "deliveries").glob("*.csv")):
        table = read_table(path)
        assert table.schema.metadata == PLAIN
        assert fingerprints([table]) == [fingerprint(read_delivery(path))]
