{#- Rows for which a boolean SQL expression over the model's columns is not true. -#}
{% test expression_is_true(model, expression) %}

with

checked as (
    select * from {{ model }}
),

final as (
    select *
    from checked
    where not coalesce({{ expression }}, false)
)

select * from final

{% endtest %}
