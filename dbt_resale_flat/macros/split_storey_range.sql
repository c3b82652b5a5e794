{#- One end of a storey band "07 TO 09": part 1 is the lowest storey, part 2 the highest. -#}
{% macro storey_range_bound(storey_range_column, part) %}
    try_cast(
        nullif(
            regexp_extract(
                upper(trim({{ storey_range_column }})), '^([0-9]+) +TO +([0-9]+)$', {{ part }}
            ),
            ''
        ) as integer
    )
{% endmacro %}
