-- One row per resale transaction, built month by month. A run rebuilds whole months
-- (months_to_rebuild): by default every month whose latest accepted delivery changed, or exactly the
-- --vars start_month..end_month window. The replace_months strategy deletes those months
-- before inserting them again, so a re-delivered month never keeps stale or duplicated rows
-- and the other months are not touched.
--
-- A fact built before the five resources were harmonised keeps working, migrated on its next
-- run: the pre-hook drops the column remaining_lease_derived replaces and adds dataset_id
-- (null in the old rows), on_schema_change appends the other new columns, and
-- months_to_rebuild rebuilds every month whose rows have a null dataset_id, once.
--
-- In the shared DuckLake (the profile's target lake) the fact is partitioned by month: runs of
-- different months then replace different files and commit side by side.

{{
    config(
        materialized='incremental',
        incremental_strategy='replace_months',
        on_schema_change='append_new_columns',
        partitioned_by=('month' if target.name == 'lake' else none),
        pre_hook=[
            "{% if is_incremental() %}"
            ~ "alter table {{ this }} drop column if exists is_remaining_lease_derived;"
            ~ "alter table {{ this }} add column if not exists dataset_id varchar;"
            ~ "{% endif %}"
        ],
    )
}}

-- months_to_rebuild reads the latest accepted deliveries on incremental runs:
-- depends_on: {{ source('hdb', 'latest_deliveries') }}

with

transactions as (
    select * from {{ ref('stg_hdb__resale_flat_prices') }}
),

final as (
    -- The fact's columns, named here as in its contract (_marts__models.yml): the same list
    -- as staging's final on purpose, so the mart's shape reads in the mart.
    select
        -- ids
        transaction_id,

        -- dates
        month,
        month_key,
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
        price_per_sqm,

        -- load metadata
        _source,
        _source_row,
        _load_id,
        _loaded_at
    from transactions
    where {{ months_to_rebuild(this) }}
)

select * from final
