"""The floor: the pipeline's work done directly in DuckDB, in one process, as fast as it goes.

    python -m bench.floor --data-dir data/bench/100k --database /tmp/floor.duckdb \\
        --start 1990-01 --end 2025-12

The same inputs and the same outputs as the pipeline, without its tools: read the CSV
deliveries into a raw table of text with each row's file and line (extract-load), count every
validation rule's failures with SQL (validate), build the fact, the two dimensions and the
monthly aggregate with the SQL of the dbt models (transform), run the data tests as queries
(test), and compute the report's aggregates (report). What is left between a pipeline figure
and this one is what the tools, the processes, the kernels and the guarantees cost.

Run as a command, it prints one JSON object: per stage, wall seconds and the process's peak
resident memory so far (``ru_maxrss``), so the figures are of this process alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import duckdb
from tap_hdb_resale.resources import RESOURCES

from hdb_elt.settings import DBT_PROJECT_DIR
from hdb_elt.validation import (
    CONTROL_CHARACTERS,
    EARLIEST_LEASE_YEAR,
    FLOOR_AREA_SQM_RANGE,
    KNOWN_FLAT_TYPES,
    KNOWN_TOWNS,
    LEASE_YEAR_MARGIN,
    MAX_TWIN_SHARE,
    MONTH_PATTERN,
    NUMBER_PATTERN,
    RESALE_PRICE_CEILING,
    RESALE_PRICE_FLOORS,
    STOREY_RANGE_PATTERN,
    YEAR_PATTERN,
    remaining_lease_form,
)
from hdb_elt.warehouse import SOURCE_COLUMNS

SEEDS = DBT_PROJECT_DIR / "seeds"


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + ")"


# The price floor of each row's year, and each resource's form of the remaining lease.
_PRICE_FLOOR = (
    "case "
    + " ".join(f"when year >= {year} then {low}" for year, low in reversed(RESALE_PRICE_FLOORS))
    + " end"
)
_LEASE_FORM_FAILS = " or ".join(
    f"(month between '{r.first_month}' and '{r.last_month or '9999-12'}' and not "
    f"regexp_full_match(lower(coalesce(remaining_lease, '')), '{remaining_lease_form(r)[0]}'))"
    for r in RESOURCES
)


RAW_ROWS = f"""
create or replace table raw_rows (
    {", ".join(f"{c} varchar" for c in SOURCE_COLUMNS)}, _source varchar, _source_row bigint)
"""
# One read per header: files of the resources without remaining_lease (before 2015) have ten
# columns, the others eleven. (``union_by_name`` would read them in one go, 3.5 times slower.)
EXTRACT_LOAD = """
insert into raw_rows
select {columns},
       filename as _source,
       -- the CSV line: DuckDB reads each file in order, the header is line 1
       row_number() over (partition by filename) + 1 as _source_row
from read_csv($files, all_varchar = true, header = true, filename = true)
where month between $start and $end
"""


def files_by_header(files: list[Path]) -> dict[tuple[str, ...], list[str]]:
    """The files grouped by their header's columns."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for path in files:
        with open(path, encoding="utf-8-sig") as handle:
            header = tuple(c.strip() for c in handle.readline().strip().split(","))
        groups.setdefault(header, []).append(str(path))
    return groups


def extract_load(con: duckdb.DuckDBPyConnection, files: list[Path], start: str, end: str) -> None:
    con.execute(RAW_ROWS)
    for header, group in files_by_header(files).items():
        columns = ", ".join(c if c in header else f"null as {c}" for c in SOURCE_COLUMNS)
        con.execute(
            EXTRACT_LOAD.format(columns=columns), {"files": group, "start": start, "end": end}
        )


# One row: how many rows fail each rule of hdb_elt.validation (pandas there, SQL here).
VALIDATE = f"""
create or replace table rule_failures as
with typed as (
    select *,
        try_cast(floor_area_sqm as double) as area,
        try_cast(resale_price as double) as price,
        try_cast(lease_commence_date as integer) as lease,
        try_cast(left(month, 4) as integer) as year
    from raw_rows
)
select
    count(*) as rows_checked,
    count(*) filter (where not regexp_full_match(floor_area_sqm, '{NUMBER_PATTERN}')
                        or not regexp_full_match(resale_price, '{NUMBER_PATTERN}')
                        or not regexp_full_match(lease_commence_date, '{YEAR_PATTERN}'))
        as types_parse,
    count(*) filter (where not regexp_full_match(month, '{MONTH_PATTERN}')) as month_format,
    count(*) filter (where month not between $start and $end) as month_in_window,
    count(*) filter (where flat_type not in {_in(KNOWN_FLAT_TYPES)}) as flat_type_known,
    count(*) filter (
        where not regexp_full_match(storey_range, '{STOREY_RANGE_PATTERN}')
           or left(storey_range, 2) > right(storey_range, 2)) as storey_range_format,
    count(*) filter (where area not between {FLOOR_AREA_SQM_RANGE[0]}
                     and {FLOOR_AREA_SQM_RANGE[1]}) as floor_area_plausible,
    count(*) filter (where price < {_PRICE_FLOOR}
                        or price > {RESALE_PRICE_CEILING}) as resale_price_plausible,
    count(*) filter (where lease < {EARLIEST_LEASE_YEAR}
                        or lease > year + {LEASE_YEAR_MARGIN}) as lease_year_plausible,
    count(*) filter (where {_LEASE_FORM_FAILS}) as remaining_lease_format,
    count(*) filter (where regexp_matches(concat({", ".join(SOURCE_COLUMNS)}),
                     '{CONTROL_CHARACTERS}')) as no_control_characters,
    count(*) filter (where town not in {_in(KNOWN_TOWNS)}) as town_known,
    count(*) - (select count(*) from (select distinct {", ".join(SOURCE_COLUMNS)}
                                      from raw_rows)) as identical_rows,
    -- the repeats in months where most rows have an identical twin
    (select coalesce(sum(repeats), 0) from (
        select month,
            sum(copies - 1) as repeats,
            sum(copies) filter (where copies > 1) as with_twin,
            sum(copies) as rows
        from (select month, count(*) as copies from raw_rows
              group by {", ".join(SOURCE_COLUMNS)})
        group by month
        having with_twin > {MAX_TWIN_SHARE} * rows
    )) as identical_rows_share
from typed
"""

# The transaction id's values, in the order of stg_hdb__resale_flat_prices' row_values.
_ID_VALUES = ", ".join(
    f"coalesce(cast({c} as varchar), '')"
    for c in (
        "strftime(month, '%Y-%m')", "town", "flat_type", "block", "street_name",
        "storey_range", "upper(flat_model)", "lease_commence_year", "remaining_lease_months",
        "floor_area_sqm", "resale_price",
    )
)  # fmt: skip
_REMAINING = """
    case
        when regexp_matches(lower(trim(remaining_lease)), '^[0-9]+ *years?( +[0-9]+ *months?)?$')
            then cast(regexp_extract(trim(remaining_lease), '^([0-9]+)', 1) as integer) * 12
                 + coalesce(try_cast(nullif(regexp_extract(lower(trim(remaining_lease)),
                            '([0-9]+) *months?$', 1), '') as integer), 0)
        when regexp_matches(trim(remaining_lease), '^[0-9]+$')
            then cast(trim(remaining_lease) as integer) * 12
        when nullif(trim(remaining_lease), '') is null
            then 99 * 12 - date_diff('month', make_date(lease_commence_year, 1, 1), month)
    end"""

# The dbt models' SQL (staging, fct_resale_transactions, dim_*, agg_monthly_town_prices) in
# one script; rows the validate stage would quarantine are left out as staging does. A copy
# on purpose: the floor measures the work without dbt. tests/test_bench.py
# (test_the_floor_builds_the_marts_dbt_builds) checks it builds the marts dbt builds.
TRANSFORM = [
    f"""
create or replace table fct_resale_transactions as
with typed as (
    select
        cast(try_strptime(trim(month), '%Y-%m') as date) as month,
        upper(regexp_replace(trim(town), ' +', ' ', 'g')) as town,
        replace(upper(regexp_replace(trim(flat_type), ' +', ' ', 'g')),
                'MULTI GENERATION', 'MULTI-GENERATION') as flat_type,
        upper(trim(block)) as block,
        upper(regexp_replace(trim(street_name), ' +', ' ', 'g')) as street_name,
        upper(regexp_replace(trim(storey_range), ' +', ' ', 'g')) as storey_range,
        try_cast(nullif(regexp_extract(upper(trim(storey_range)),
                 '^([0-9]+) +TO +([0-9]+)$', 1), '') as integer) as storey_lower,
        try_cast(nullif(regexp_extract(upper(trim(storey_range)),
                 '^([0-9]+) +TO +([0-9]+)$', 2), '') as integer) as storey_upper,
        regexp_replace(trim(flat_model), ' +', ' ', 'g') as flat_model,
        try_cast(trim(lease_commence_date) as integer) as lease_commence_year,
        nullif(trim(remaining_lease), '') as remaining_lease,
        try_cast(trim(floor_area_sqm) as decimal(6, 2)) as floor_area_sqm,
        try_cast(trim(resale_price) as decimal(12, 2)) as resale_price,
        _source,
        _source_row
    from raw_rows
),
harmonised as (
    select typed.* exclude (flat_model),
        coalesce(models.flat_model, spellings.flat_model, typed.flat_model) as flat_model,
        resources.dataset_id, resources.date_basis
    from typed
    left join read_csv('{SEEDS / "flat_model_spellings.csv"}', header = true,
                       all_varchar = true)
        as spellings on upper(typed.flat_model)
            = upper(regexp_replace(trim(spellings.spelling), ' +', ' ', 'g'))
    left join read_csv('{SEEDS / "flat_models.csv"}', header = true, all_varchar = true)
        as models on upper(coalesce(spellings.flat_model, typed.flat_model))
            = upper(models.flat_model)
    left join read_csv('{SEEDS / "resources.csv"}', header = true, all_varchar = true)
        as resources on strftime(typed.month, '%Y-%m')
            between resources.first_month and coalesce(resources.last_month, '9999-12')
),
parsed as (
    select harmonised.* exclude (remaining_lease),
        cast({_REMAINING} as integer) as remaining_lease_months,
        remaining_lease is null as remaining_lease_derived
    from harmonised
),
row_values as (
    -- the transaction id's typed values in one string, as staging builds it
    select *, concat_ws('|', {_ID_VALUES}) as row_values
    from parsed
),
keyed as (
    select row_values.* exclude (row_values),
        md5(row_values || '|' || cast(row_number() over (partition by row_values
                                      order by _source, _source_row) as varchar))
            as transaction_id
    from row_values
)
select
    transaction_id, month, strftime(month, '%Y-%m') as month_key, date_basis, dataset_id,
    town, flat_type, block, street_name, storey_range, storey_lower, storey_upper, flat_model,
    lease_commence_year, remaining_lease_months, remaining_lease_derived,
    floor_area_sqm, resale_price,
    cast(round(resale_price / nullif(floor_area_sqm, 0), 2) as decimal(10, 2))
        as price_per_sqm,
    _source, _source_row
from keyed
""",
    f"""create or replace table dim_town as
        select upper(trim(town)) as town, region
        from read_csv('{SEEDS / "town_regions.csv"}', header = true)""",
    f"""create or replace table dim_flat_type as
        select upper(trim(flat_type)) as flat_type, sort_order, description
        from read_csv('{SEEDS / "flat_types.csv"}', header = true)""",
    """
create or replace table agg_monthly_town_prices as
select month, month_key, town, flat_type,
    count(*) as transactions,
    cast(median(resale_price) as decimal(12, 2)) as median_price,
    cast(round(sum(resale_price) / count(*), 2) as decimal(12, 2)) as mean_price,
    cast(median(price_per_sqm) as decimal(10, 2)) as median_price_per_sqm,
    min(resale_price) as min_price,
    max(resale_price) as max_price
from fct_resale_transactions
group by month, month_key, town, flat_type
""",
]

# dbt's data tests, as queries that count failing rows (all must be 0).
TEST = """
select
    (select count(*) - count(distinct transaction_id) from fct_resale_transactions)
        as transaction_id_unique,
    (select count(*) from fct_resale_transactions
     where transaction_id is null or month is null or town is null or resale_price is null
        or remaining_lease_months is null or lease_commence_year is null
        or dataset_id is null or date_basis is null) as not_null,
    (select count(*) from fct_resale_transactions
     where floor_area_sqm not between 20 and 400 or resale_price not between 1000 and 3000000
        or price_per_sqm not between 100 and 30000 or remaining_lease_months not between 0 and 1188
        or lease_commence_year not between 1960 and extract(year from month)
        or storey_lower > storey_upper) as ranges,
    (select count(*) from fct_resale_transactions f
     where not exists (select 1 from dim_town t where t.town = f.town)
        or not exists (select 1 from dim_flat_type t where t.flat_type = f.flat_type))
        as relationships,
    (select count(*) from (select month_key from raw_rows r
                           full join (select month_key, count(*) as n
                                      from fct_resale_transactions group by all) f
                           on r.month = f.month_key
                           group by all having count(*) != any_value(n))) as reconciliation,
    (select count(*) from (select month_key, town, flat_type from agg_monthly_town_prices
                           group by all having count(*) > 1)) as aggregate_grain
"""

REPORT = [
    "select month_key, count(*), median(resale_price) from fct_resale_transactions group by all",
    """select f.town, any_value(t.region), count(*), median(price_per_sqm), median(resale_price)
       from fct_resale_transactions f left join dim_town t using (town) group by all""",
    """select month_key, town, count(*), median(price_per_sqm)
       from fct_resale_transactions group by all""",
    """select flat_type, quantile_cont(cast(resale_price as double), [0.05, 0.25, 0.5, 0.75, 0.95])
       from fct_resale_transactions group by all""",
]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_floor(files: list[Path], database: Path, start: str, end: str) -> dict:
    """Run every stage in DuckDB; per stage ``{"seconds", "peak_rss_mib"}`` plus the counts."""
    figures: dict[str, dict] = {}
    started = time.perf_counter()
    con = duckdb.connect(str(database))
    figures["connect_s"] = time.perf_counter() - started

    def stage(name: str, work) -> object:
        began = time.perf_counter()
        result = work()
        figures[name] = {"seconds": time.perf_counter() - began, "peak_rss_mib": _peak_mib()}
        return result

    stage("extract_load", lambda: extract_load(con, files, start, end))
    failures = stage(
        "validate",
        lambda: (
            con.execute(VALIDATE, {"start": start, "end": end})
            .execute("select * from rule_failures")
            .df()
            .iloc[0]
            .to_dict()
        ),
    )
    stage("transform", lambda: [con.execute(sql) for sql in TRANSFORM])
    tests = stage("test", lambda: con.execute(TEST).df().iloc[0].to_dict())
    stage("report", lambda: [con.execute(sql).fetchall() for sql in REPORT])
    figures["rows"] = con.execute("select count(*) from raw_rows").fetchone()[0]
    figures["fact_rows"] = con.execute("select count(*) from fct_resale_transactions").fetchone()[0]
    con.close()
    figures["rule_failures"] = {k: int(v) for k, v in failures.items()}
    figures["test_failures"] = {k: int(v) for k, v in tests.items()}
    figures["total_s"] = time.perf_counter() - started
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--start", required=True)
    parser.add_argument("--end", required=True)
    args = parser.parse_args(argv)
    files = sorted(args.data_dir.resolve().glob("*.csv"))
    if not files:
        sys.exit(f"No CSV deliveries in {args.data_dir}")
    print(json.dumps(run_floor(files, args.database, args.start, args.end)))


if __name__ == "__main__":
    main()
