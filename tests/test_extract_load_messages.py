"""Meltano's log is long; the error a learner sees is the one line that explains the failure."""

from __future__ import annotations

from hdb_elt.extract_load import explain_failure

MELTANO_OUTPUT = """\
2026-11-24T06:22:11.1Z [info     ] meltano      Running extract & load...
2026-11-24T06:22:11.5Z [info     ] tap-hdb-resale Traceback (most recent call last):
2026-11-24T06:22:11.5Z [info     ] tap-hdb-resale   File "streams.py", line 80, in get_records
2026-11-24T06:22:11.5Z [info     ] tap-hdb-resale tap_hdb_resale.deliveries.DeliveryError: resale-flat-prices-2023-02.csv, line 5, column resale_price: 'abc' is not a number (rule: resale_price must be numeric).
2026-11-24T06:22:11.6Z [error    ] target-hdb-duckdb ERROR target-hdb-duckdb: The input stopped after 0 records
2026-11-24T06:22:11.7Z [error    ] meltano      Extractor failed
"""


def test_the_tap_error_is_picked_out_of_meltano_output() -> None:
    assert explain_failure(MELTANO_OUTPUT) == (
        "DeliveryError: resale-flat-prices-2023-02.csv, line 5, column resale_price: "
        "'abc' is not a number (rule: resale_price must be numeric)."
    )


def test_without_a_known_error_the_last_error_lines_are_shown() -> None:
    text = explain_failure(
        "2026Z [info ] meltano Something odd\n2026Z [error ] meltano Loader failed\n"
    )
    assert "Loader failed" in text
