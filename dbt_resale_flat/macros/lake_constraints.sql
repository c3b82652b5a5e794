{#-
    The marts' contracts in the shared DuckLake (the profile's target lake): DuckLake has no
    keys, so primary_key, unique and foreign_key constraints are left out of its tables there;
    the data tests (unique, relationships) still check them. A DuckDB file keeps every
    constraint, as dbt-duckdb renders them.
-#}
{% macro duckdb__get_table_columns_and_constraints() -%}
    {%- if target.name != 'lake' -%}
        {{ return(table_columns_and_constraints()) }}
    {%- endif -%}
    {%- set keyless = ['primary_key', 'unique', 'foreign_key'] -%}
    {%- set columns = {} -%}
    {%- for name, column in model['columns'].items() -%}
        {%- set kept = column.get('constraints', []) | rejectattr('type', 'in', keyless) | list -%}
        {%- do columns.update({name: dict(column, constraints=kept)}) -%}
    {%- endfor -%}
    {%- set column_ddl = adapter.render_raw_columns_constraints(raw_columns=columns) -%}
    {%- set model_constraints = model['constraints'] | rejectattr('type', 'in', keyless) | list -%}
    {%- set model_ddl = adapter.render_raw_model_constraints(raw_constraints=model_constraints) -%}
    {%- set ddl -%}
    (
    {% for c in column_ddl -%}
      {{ c }}{{ "," if not loop.last or model_ddl }}
    {% endfor %}
    {% for c in model_ddl -%}
        {{ c }}{{ "," if not loop.last }}
    {% endfor -%}
    )
    {%- endset -%}
    {{ return(ddl) }}
{%- endmacro %}
