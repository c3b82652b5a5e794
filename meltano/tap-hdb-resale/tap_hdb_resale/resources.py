"""The five data.gov.sg resources that together hold HDB resale prices since January 1990.

HDB publishes the same table in five datasets, one per period. Their columns and spellings
drift: the three oldest have no ``remaining_lease``, the one for 2015-2016 gives it as a whole
number of years, and only the newest writes ``61 years 04 months``. Before March 2012 a sale's
month is the month its resale was approved, from then on the month it was registered.

This table is the one place that says so; the tap reads it to tell a delivery's resource, the
stage library (``hdb_elt``) imports it for settings, partitions and ``make data``.
"""

from __future__ import annotations

from dataclasses import dataclass

# The columns of the newest resource, in data.gov.sg's order: raw keeps every resource's rows
# in these columns, a column a resource lacks left empty. The one list, which the tap and the
# workbook read (hdb_elt.warehouse.SOURCE_COLUMNS). dbt cannot import it: its copy, the raw
# columns of dbt_resale_flat/models/staging/_hdb__sources.yml, is kept equal by
# tests/test_one_place_per_fact.py.
COLUMNS = (
    "month",
    "town",
    "flat_type",
    "block",
    "street_name",
    "storey_range",
    "floor_area_sqm",
    "flat_model",
    "lease_commence_date",
    "remaining_lease",
    "resale_price",
)
WITHOUT_REMAINING_LEASE = tuple(column for column in COLUMNS if column != "remaining_lease")


@dataclass(frozen=True)
class Resource:
    """One data.gov.sg dataset of resale prices: its id, its months, and how it writes them."""

    dataset_id: str
    first_month: str
    last_month: str | None  # None: still published month by month
    date_basis: str  # "approval" or "registration": what a row's month is the month of
    columns: tuple[str, ...]
    file_name: str  # the name data.gov.sg gives its CSV download
    title: str

    def holds(self, month: str) -> bool:
        return self.first_month <= month and (self.last_month is None or month <= self.last_month)

    @property
    def has_remaining_lease(self) -> bool:
        return "remaining_lease" in self.columns


# One entry per resource, oldest first; the entries share one shape on purpose (a table).
RESOURCES = (
    Resource(
        dataset_id="d_ebc5ab87086db484f88045b47411ebc5",
        first_month="1990-01",
        last_month="1999-12",
        date_basis="approval",
        columns=WITHOUT_REMAINING_LEASE,
        file_name="resale-flat-prices-based-on-approval-date-1990-1999.csv",
        title="Resale flat prices based on approval date, 1990 - 1999",
    ),
    Resource(
        dataset_id="d_43f493c6c50d54243cc1eab0df142d6a",
        first_month="2000-01",
        last_month="2012-02",
        date_basis="approval",
        columns=WITHOUT_REMAINING_LEASE,
        file_name="resale-flat-prices-based-on-approval-date-2000-feb-2012.csv",
        title="Resale flat prices based on approval date, 2000 - Feb 2012",
    ),
    Resource(
        dataset_id="d_2d5ff9ea31397b66239f245f57751537",
        first_month="2012-03",
        last_month="2014-12",
        date_basis="registration",
        columns=WITHOUT_REMAINING_LEASE,
        file_name="resale-flat-prices-based-on-registration-date-from-mar-2012-to-dec-2014.csv",
        title="Resale flat prices based on registration date, from Mar 2012 to Dec 2014",
    ),
    Resource(
        dataset_id="d_ea9ed51da2787afaf8e51f827c304208",
        first_month="2015-01",
        last_month="2016-12",
        date_basis="registration",
        columns=COLUMNS,
        file_name="resale-flat-prices-based-on-registration-date-from-jan-2015-to-dec-2016.csv",
        title="Resale flat prices based on registration date, from Jan 2015 to Dec 2016",
    ),
    Resource(
        dataset_id="d_8b84c4ee58e3cfc0ece0d773c8ca6abc",
        first_month="2017-01",
        last_month=None,
        date_basis="registration",
        columns=COLUMNS,
        file_name="resale-flat-prices-based-on-registration-date-from-jan-2017-onwards.csv",
        title="Resale flat prices based on registration date from Jan-2017 onwards",
    ),
)
FIRST_MONTH = RESOURCES[0].first_month
CURRENT = RESOURCES[-1]  # the resource still published month by month


def resource_of(month: str) -> Resource:
    """The resource that publishes ``month`` (a month before 1990-01 has none: ValueError)."""
    for resource in RESOURCES:
        if resource.holds(month):
            return resource
    raise ValueError(f"{month}: no data.gov.sg resource holds resale prices before {FIRST_MONTH}")


def resources_between(start: str, end: str) -> list[Resource]:
    """The resources holding any month of ``start``..``end``, oldest first."""
    return [
        r
        for r in RESOURCES
        if r.first_month <= end and (r.last_month is None or start <= r.last_month)
    ]


def by_dataset_id(dataset_id: str) -> Resource:
    for resource in RESOURCES:
        if resource.dataset_id == dataset_id:
            return resource
    known = ", ".join(r.dataset_id for r in RESOURCES)
    raise ValueError(f"{dataset_id!r} is not one of the resale price datasets ({known})")
