-- Prices per registration month x town x flat type, from the fact table. Rebuilt in full on
-- every run: it is a few thousand rows aggregated from the fact in milliseconds, and a full
-- rebuild cannot drift from the fact. bench/floor.py repeats this SQL on purpose (the
-- benchmark's floor, without dbt); tests/test_bench.py checks both build the same table.

with

transactions as (
    select * from {{ ref('fct_resale_transactions') }}
),

final as (
    select
        -- grain
        month,
        month_key,
        town,
        flat_type,

        -- measures
        count(*) as transactions,
        cast(median(resale_price) as decimal(12, 2)) as median_price,
        -- exact decimal sum, so the mean is identical on every rebuild
        cast(round(sum(resale_price) / count(*), 2) as decimal(12, 2)) as mean_price,
        cast(median(price_per_sqm) as decimal(10, 2)) as median_price_per_sqm,
        min(resale_price) as min_price,
        max(resale_price) as max_price
    from transactions
    group by month, month_key, town, flat_type
)

select * from final
