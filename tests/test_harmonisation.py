"""hdb_elt.harmonisation: the table of staging's harmonisation rules notebook 03 shows (what
the fact shows per resource is tested on a real build in tests/test_dbt_history.py)."""

from __future__ import annotations

from hdb_elt.harmonisation import HARMONISATION_TESTS, harmonisation_cases


def test_the_cases_are_the_unit_tests_of_every_harmonisation_rule():
    cases = harmonisation_cases()

    assert list(dict.fromkeys(cases["rule"])) == [
        name.removeprefix("test_").replace("_", " ") for name in HARMONISATION_TESTS
    ]
    by_delivered = dict(zip(cases["delivered"], cases["staged"], strict=False))
    assert by_delivered["flat_model='NEW GENERATION'"] == "flat_model='New Generation'"
    assert by_delivered["storey_range='01 TO 05'"] == (
        "storey_range='01 TO 05', storey_lower=1, storey_upper=5"
    )
    derived = cases[cases["month"] == "1990-01"]
    assert "remaining_lease_months=1032, remaining_lease_derived=True" in set(derived["staged"])
    assert cases["month"].min() == "1990-01" and cases["month"].max() >= "2023-01"
