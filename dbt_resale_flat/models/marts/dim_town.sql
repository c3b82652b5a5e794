-- One row per HDB town, with its planning region (seed town_regions). The same shape as
-- dim_flat_type on purpose: each dimension reads alone, seed to mart.

with

town_regions as (
    select * from {{ ref('town_regions') }}
),

final as (
    select
        -- ids
        upper(trim(town)) as town,

        -- attributes
        region
    from town_regions
)

select * from final
