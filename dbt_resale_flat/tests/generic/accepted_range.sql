{#-
    Rows whose value lies outside [min_value, max_value] (either bound optional; a bound may
    be a number or a SQL expression over the row, such as "extract(year from month)").
    Nulls are left to not_null.
-#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}

with

checked as (
    select * from {{ model }}
),

final as (
    select *
    from checked
    where
        {{ column_name }} is not null
        and (
            false
            {%- if min_value is not none %}
            or not ({{ column_name }} {{ '>=' if inclusive else '>' }} {{ min_value }})
            {%- endif %}
            {%- if max_value is not none %}
            or not ({{ column_name }} {{ '<=' if inclusive else '<' }} {{ max_value }})
            {%- endif %}
        )
)

select * from final

{% endtest %}
