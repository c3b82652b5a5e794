{#-
    Incremental strategy "replace_months": delete+insert by month. Deletes every month the
    run rebuilds (months_to_rebuild), then inserts the freshly built rows. Unlike delete+insert
    with unique_key=month_key, it also empties a rebuilt month that now has no rows at all
    (say, a delivery that was entirely quarantined), so no stale row can survive a rebuild.
    Both statements run in the model's transaction: a failed build changes nothing.
-#}
{% macro get_incremental_replace_months_sql(arg_dict) %}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set columns = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    delete from {{ target }}
    where {{ months_to_rebuild(target) }};

    insert into {{ target }} ({{ columns }})
    select {{ columns }}
    from {{ arg_dict['temp_relation'] }}
{% endmacro %}
