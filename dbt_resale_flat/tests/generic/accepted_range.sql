{#-
    Rows whose value lies outside [min_value, max_value] (either bound optional; a bound may
    be a number or a SQL expression over the row, such as "extract(year from month)").
    Nulls are left to not_null. An expression_is_true test whose expression is "not outside
    the range", so the two tests read the model one way.
-#}
{% test accepted_range(model, column_name, min_value=none, max_value=none, inclusive=true) %}

{%- set outside_range -%}
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
{%- endset -%}

{{ test_expression_is_true(model, "not coalesce(" ~ outside_range ~ ", false)") }}

{% endtest %}
