"""How the notebooks show tables (hdb_elt.display): readable numbers, whole texts, no JSON."""

from __future__ import annotations

import json

import pandas as pd

from hdb_elt.display import first_failure, markdown_table, readable, results_table


def test_numbers_read_as_people_write_them() -> None:
    frame = pd.DataFrame(
        {
            "median_price": [282000.0, 4952.375],
            "price_per_sqm": [6440.0, 6068.18],
            "transactions": [2552, 3],
            "lease_commence_date": [1978, 2001],
            "month": pd.to_datetime(["2023-01-01", "2023-02-01"]),
            "town": ["ANG MO KIO", "BEDOK"],
            "share": [0.023277, 0.000233],
        }
    )
    shown = readable(frame)
    assert shown["median_price"].tolist() == ["282,000.00", "4,952.38"]
    assert shown["price_per_sqm"].tolist() == ["6,440.00", "6,068.18"]  # one column, one format
    assert shown["transactions"].tolist() == ["2,552", "3"]
    assert shown["lease_commence_date"].tolist() == [1978, 2001]
    assert shown["month"].tolist() == ["2023-01-01", "2023-02-01"]
    assert shown["town"].tolist() == ["ANG MO KIO", "BEDOK"]
    assert shown["share"].tolist() == ["2.3%", "0.0%"]


def test_a_markdown_table_keeps_every_text_whole_and_escapes_what_markdown_reads() -> None:
    long = "block is a block number: one to four digits, perhaps one letter (such as 308B)"
    text = markdown_table(pd.DataFrame({"rule": ["a|b"], "description": [long + " S$ 1"]})).data
    assert long in text and "a\\|b" in text and "S\\$ 1" in text
    assert text.splitlines()[1] == "|---|---|"


def test_a_rules_first_failure_is_said_in_words() -> None:
    sample = [
        {"file": "resale-flat-prices-2023-02.csv", "line": 2, "block": "ANG MO KIO AVE 3"},
        {"file": "resale-flat-prices-2023-02.csv", "line": 3, "block": "BEDOK NTH"},
    ]
    assert first_failure(json.dumps(sample)) == (
        "resale-flat-prices-2023-02.csv line 2: block 'ANG MO KIO AVE 3' "
        "(and 1 more shown in sample)"
    )
    assert first_failure("[]") == ""
    results = pd.DataFrame(
        {
            "rule": ["block_format", "quarantine_threshold"],
            "failing_rows": [1837, 0],
            "sample": [json.dumps(sample[:1]), "[]"],
        }
    )
    text = results_table(results).data
    assert "| block_format | 1,837 | resale-flat-prices-2023-02.csv line 2: block" in text
    assert '"file"' not in text
