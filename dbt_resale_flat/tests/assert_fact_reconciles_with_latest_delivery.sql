-- Per month: rows in the fact = rows in the month's latest accepted delivery
-- (raw.latest_deliveries) minus its quarantined rows. Computed from the view and audit
-- directly, not from staging, so a bug in staging or in the incremental logic (a stale,
-- duplicated, missing or extra row) shows here; its import CTEs are staging's on purpose.
-- Returns the months that disagree.
--
-- In the shared DuckLake (target lake), runs of other months load and build beside this one: a
-- month another run has loaded but not yet built is not an error of this run. There, only the
-- months of this run's window are checked (this run's build replaced exactly those): a window
-- given by hand (--vars), else the one the test stage records for its `dbt test`
-- (recorded_run_window). A DuckDB file has one run at a time: every month.
{%- set window = {'start': none, 'end': none} %}
{%- if target.name == 'lake' %}
    {%- set window = month_window() %}
    {%- if window.start is none and window.end is none %}
        {%- set window = recorded_run_window() %}
    {%- endif %}
{%- endif %}

with

latest_delivery as (
    select * from {{ source('hdb', 'latest_deliveries') }}
),

quarantine as (
    select * from {{ source('audit', 'quarantine') }}
),

fact as (
    select * from {{ ref('fct_resale_transactions') }}
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
        trim(latest_delivery.month) as month_key,
        count(*) filter (where quarantined_rows._load_id is null) as expected_rows
    from latest_delivery
    left join quarantined_rows
        on
            latest_delivery._load_id = quarantined_rows._load_id
            and latest_delivery._source = quarantined_rows._source
            and latest_delivery._source_row = quarantined_rows._source_row
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
    where
        coalesce(expected.expected_rows, 0) != coalesce(actual.fact_rows, 0)
        {%- if window.start is not none %}
            and coalesce(expected.month_key, actual.month_key) >= '{{ window.start }}'
        {%- endif %}
        {%- if window.end is not none %}
            and coalesce(expected.month_key, actual.month_key) <= '{{ window.end }}'
        {%- endif %}
)

select * from final
