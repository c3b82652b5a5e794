{#-
    Schemas land with their plain names (staging, marts) next to raw and audit, instead of
    dbt's default <target schema>_<custom schema>. One warehouse file per environment keeps
    environments apart, so no prefix is needed.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
