-- Staging gives each row the resource that publishes its month (seed resources). Raw records
-- the resource each row was delivered from (_dataset_id, where the loader writes it): the two
-- must agree, or a file was read as the wrong resource. Rows loaded before raw had the column,
-- or with it empty, are not checked. Returns the fact rows that disagree.

{%- set raw_columns = [] -%}
{%- if execute -%}
    {%- set raw_columns = adapter.get_columns_in_relation(source('hdb', 'resale_flat_prices'))
        | map(attribute='name') | map('lower') | list -%}
{%- endif %}

with

fact as (
    select * from {{ ref('fct_resale_transactions') }}
),

delivered as (
    select * from {{ source('hdb', 'resale_flat_prices') }}
)

{% if '_dataset_id' in raw_columns -%}
select
    fact.transaction_id,
    fact.month_key,
    fact.dataset_id,
    delivered._dataset_id as delivered_dataset_id
from fact
inner join delivered
    on
        fact._load_id = delivered._load_id
        and fact._source = delivered._source
        and fact._source_row = delivered._source_row
where
    nullif(delivered._dataset_id, '') is not null
    and delivered._dataset_id != fact.dataset_id
{%- else -%}
-- raw has no _dataset_id yet: nothing to cross-check
select
    fact.transaction_id,
    fact.month_key,
    fact.dataset_id,
    null as delivered_dataset_id
from fact
where false
{%- endif %}
