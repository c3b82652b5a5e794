"""The five resources' periods, as the tap and the workbook read them."""

from __future__ import annotations

import itertools

import pytest

from tap_hdb_resale.months import shift_month
from tap_hdb_resale.resources import (
    FIRST_MONTH,
    RESOURCES,
    by_dataset_id,
    resource_of,
    resources_between,
)


def test_the_periods_follow_one_another_without_gap_or_overlap():
    assert FIRST_MONTH == "1990-01"
    for before, after in itertools.pairwise(RESOURCES):
        assert shift_month(before.last_month, 1) == after.first_month
    assert RESOURCES[-1].last_month is None


@pytest.mark.parametrize(
    ("month", "dataset_id", "basis", "lease"),
    [
        ("1990-01", "d_ebc5ab87086db484f88045b47411ebc5", "approval", False),
        ("1999-12", "d_ebc5ab87086db484f88045b47411ebc5", "approval", False),
        ("2012-02", "d_43f493c6c50d54243cc1eab0df142d6a", "approval", False),
        ("2012-03", "d_2d5ff9ea31397b66239f245f57751537", "registration", False),
        ("2016-12", "d_ea9ed51da2787afaf8e51f827c304208", "registration", True),
        ("2017-01", "d_8b84c4ee58e3cfc0ece0d773c8ca6abc", "registration", True),
        ("2031-06", "d_8b84c4ee58e3cfc0ece0d773c8ca6abc", "registration", True),
    ],
)
def test_each_month_has_one_resource(month, dataset_id, basis, lease):
    resource = resource_of(month)
    assert (resource.dataset_id, resource.date_basis, resource.has_remaining_lease) == (
        dataset_id,
        basis,
        lease,
    )
    assert by_dataset_id(dataset_id) is resource


def test_a_month_before_1990_has_no_resource():
    with pytest.raises(ValueError, match="before 1990-01"):
        resource_of("1989-12")


def test_a_window_spans_the_resources_it_touches():
    assert [r.first_month for r in resources_between("2011-06", "2015-01")] == [
        "2000-01",
        "2012-03",
        "2015-01",
    ]
