{#-
    ref() and source() as dbt's own, but naming a relation of the DuckDB file without its
    catalog (schema.name, not "hdb_resale".schema.name). DuckDB 1.4 keeps a view's SQL as
    written: a staging view naming its file's catalog breaks once the file is copied or
    restored under another name (a checkpoint, an exercise's copy, a backup), with "Catalog ...
    does not exist". Unqualified, the view reads the file it lives in. The shared DuckLake
    (target lake) keeps the catalog: it is always attached under one name, warehouse.
-#}
{% macro ref() %}
    {%- set relation = builtins.ref(*varargs, **kwargs) -%}
    {{ return(without_catalog(relation)) }}
{% endmacro %}

{% macro source() %}
    {%- set relation = builtins.source(*varargs, **kwargs) -%}
    {{ return(without_catalog(relation)) }}
{% endmacro %}

{% macro without_catalog(relation) %}
    {%- if target.name != 'lake' and relation is not none and relation.include is defined -%}
        {{ return(relation.include(database=False)) }}
    {%- endif -%}
    {{ return(relation) }}
{% endmacro %}
