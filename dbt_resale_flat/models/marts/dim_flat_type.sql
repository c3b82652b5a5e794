-- One row per HDB flat type, in display order (seed flat_types). The same shape as dim_town
-- on purpose: each dimension reads alone, seed to mart.

with

flat_types as (
    select * from {{ ref('flat_types') }}
),

final as (
    select
        -- ids
        upper(trim(flat_type)) as flat_type,

        -- attributes
        sort_order,
        description
    from flat_types
)

select * from final
