-- One row per resale transaction of the latest accepted delivery of each month (the view
-- raw.latest_deliveries decides which delivery that is), typed, cleaned and harmonised across
-- the five data.gov.sg resources since 1990 (data/README.md, "How each column is
-- harmonised"). Quarantined rows (audit.quarantine) are left out.
-- bench/floor.py repeats this SQL on purpose (the benchmark's floor, DuckDB without dbt);
-- tests/test_bench.py checks that the two build the same fact.

with

latest_delivery as (
    select * from {{ source('hdb', 'latest_deliveries') }}
),

quarantine as (
    select * from {{ source('audit', 'quarantine') }}
),

resources as (
    -- the five data.gov.sg resources and their months (a copy of tap_hdb_resale.resources)
    select * from {{ ref('resources') }}
),

flat_models as (
    -- today's spelling of each flat model
    select * from {{ ref('flat_models') }}
),

flat_model_spellings as (
    -- other spellings of a flat model than today's (beyond case), and the model each means
    select * from {{ ref('flat_model_spellings') }}
),

typed as (
    -- Which spellings are normalised (and which are errors the gate quarantines) is decided
    -- once, in hdb_elt/normalisation.py, and the gate checks the values normalised the same
    -- way; this is its SQL copy, kept equal by tests/test_normalisation.py.
    select
        -- dates
        cast(try_strptime(trim(month), '%Y-%m') as date) as month,

        -- dimensions
        upper(regexp_replace(trim(town), ' +', ' ', 'g')) as town,
        replace(
            upper(regexp_replace(trim(flat_type), ' +', ' ', 'g')),
            'MULTI GENERATION',
            'MULTI-GENERATION'
        ) as flat_type,
        upper(trim(block)) as block,
        upper(regexp_replace(trim(street_name), ' +', ' ', 'g')) as street_name,
        upper(regexp_replace(trim(storey_range), ' +', ' ', 'g')) as storey_range,
        {{ storey_range_bound('storey_range', 1) }} as storey_lower,
        {{ storey_range_bound('storey_range', 2) }} as storey_upper,
        regexp_replace(trim(flat_model), ' +', ' ', 'g') as flat_model,
        try_cast(trim(lease_commence_date) as integer) as lease_commence_year,
        nullif(trim(remaining_lease), '') as remaining_lease,

        -- measures
        try_cast(trim(floor_area_sqm) as decimal(6, 2)) as floor_area_sqm,
        try_cast(trim(resale_price) as decimal(12, 2)) as resale_price,

        -- load metadata
        _source,
        _source_row,
        _load_id,
        _loaded_at
    from latest_delivery
),

harmonised as (
    -- One spelling per flat model across eras, whatever the case it was delivered in
    -- (NEW GENERATION in the 1990s, New Generation since): the seed's. Another spelling of a
    -- model (seed flat_model_spellings) is that model. hdb_elt/normalisation.py reads the same
    -- seeds, so the gate agrees. A model the seeds lack keeps its spelling (and the fact's
    -- relationships test warns). The resource is the one publishing the month.
    select
        typed.* exclude (flat_model),
        coalesce(
            flat_models.flat_model, flat_model_spellings.flat_model, typed.flat_model
        ) as flat_model,
        resources.dataset_id,
        resources.date_basis
    from typed
    left join flat_model_spellings
        on upper(typed.flat_model)
        = upper(regexp_replace(trim(flat_model_spellings.spelling), ' +', ' ', 'g'))
    left join flat_models
        on upper(coalesce(flat_model_spellings.flat_model, typed.flat_model))
        = upper(flat_models.flat_model)
    left join resources
        on strftime(typed.month, '%Y-%m') between resources.first_month
        and coalesce(nullif(resources.last_month, ''), '9999-12')
),

parsed as (
    select
        harmonised.* exclude (remaining_lease),
        cast(
            {{ parse_remaining_lease_months('remaining_lease', 'lease_commence_year', 'month') }}
            as integer
        ) as remaining_lease_months,
        -- the three oldest resources have no remaining lease: derived, and flagged so
        remaining_lease is null as remaining_lease_derived
    from harmonised
),

row_values as (
    -- The row's typed values in one string, the same for identical twins and for any two
    -- spellings of the same value (44 and 44.0 are both 44.00; 288000.00 is 288000.00). The
    -- flat model in upper case, as before its spellings were harmonised: ids stay as they were.
    select
        parsed.*,
        concat_ws(
            '|',
            coalesce(strftime(parsed.month, '%Y-%m'), ''),
            {%- for column in ['town', 'flat_type', 'block', 'street_name', 'storey_range',
                               'upper(flat_model)', 'lease_commence_year',
                               'remaining_lease_months', 'floor_area_sqm', 'resale_price'] %}
            coalesce(cast({{ column }} as varchar), ''){{ ',' if not loop.last }}
            {%- endfor %}
        ) as row_values
    from parsed
),

keyed as (
    -- No natural key, and identical rows are distinct sales: hash the row's typed values plus
    -- its occurrence number among its identical twins. The id depends on the values only, not
    -- on how they were written, so it is the same on every rebuild and in every delivery that
    -- repeats the sale. Twins are found by the one string of their values rather than by the
    -- columns: one sort key instead of eleven makes this step over twice as fast on a million
    -- rows.
    select
        row_values.* exclude (row_values),
        md5(
            row_values.row_values || '|' || cast(
                row_number() over (
                    partition by row_values.row_values
                    order by row_values._source, row_values._source_row
                ) as varchar
            )
        ) as transaction_id
    from row_values
),

not_quarantined as (
    select keyed.*
    from keyed
    where not exists (
        select 1
        from quarantine
        where
            quarantine._load_id = keyed._load_id
            and quarantine._source = keyed._source
            and quarantine._source_row = keyed._source_row
    )
),

final as (
    select
        -- ids
        transaction_id,

        -- dates
        month,
        strftime(month, '%Y-%m') as month_key,
        date_basis,

        -- the resource the row's month is published in
        dataset_id,

        -- dimensions
        town,
        flat_type,
        block,
        street_name,
        storey_range,
        storey_lower,
        storey_upper,
        flat_model,
        lease_commence_year,
        remaining_lease_months,
        remaining_lease_derived,

        -- measures
        floor_area_sqm,
        resale_price,
        cast(round(resale_price / nullif(floor_area_sqm, 0), 2) as decimal(10, 2))
            as price_per_sqm,

        -- load metadata
        _source,
        _source_row,
        _load_id,
        _loaded_at
    from not_quarantined
)

select * from final
