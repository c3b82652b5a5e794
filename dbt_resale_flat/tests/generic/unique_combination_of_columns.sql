{#- Combinations of the given columns that occur more than once: a composite key test. -#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

with

checked as (
    select * from {{ model }}
),

final as (
    select
        {{ combination_of_columns | join(', ') }},
        count(*) as occurrences
    from checked
    group by {{ combination_of_columns | join(', ') }}
    having count(*) > 1
)

select * from final

{% endtest %}
