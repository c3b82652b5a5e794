-- Per month: rows in the fact = rows in the month's latest raw delivery minus its quarantined
-- rows. Computed from raw and audit directly, not from staging, so a bug in staging or in the
-- incremental logic (a stale, duplicated, missing or extra row) shows here. Returns the months
-- that disagree.

with

source as (
    select * from {{ source('hdb', 'resale_flat_prices') }}
),

quarantine as (
    select * from {{ source('audit', 'quarantine') }}
),

fact as (
    select * from {{ ref('fct_resale_transactions') }}
),

latest_loads as (
    select
        trim(month) as month_key,
        max(_loaded_at) as latest_loaded_at
    from source
    group by 1
),

quarantined_rows as (
    -- a row may be quarantined by several rules: count it once
    select distinct
        _load_id,
        _source,
        _source_row
    from quarantine
),

expected as (
    select
        latest_loads.month_key,
        count(*) filter (where quarantined_rows._load_id is null) as expected_rows
    from source
    inner join latest_loads
        on
            trim(source.month) = latest_loads.month_key
            and source._loaded_at = latest_loads.latest_loaded_at
    left join quarantined_rows
        on
            source._load_id = quarantined_rows._load_id
            and source._source = quarantined_rows._source
            and source._source_row = quarantined_rows._source_row
    group by 1
),

actual as (
    select
        month_key,
        count(*) as fact_rows
    from fact
    group by 1
),

final as (
    select
        coalesce(expected.month_key, actual.month_key) as month_key,
        coalesce(expected.expected_rows, 0) as expected_rows,
        coalesce(actual.fact_rows, 0) as fact_rows
    from expected
    full outer join actual
        on expected.month_key = actual.month_key
    where coalesce(expected.expected_rows, 0) != coalesce(actual.fact_rows, 0)
)

select * from final
