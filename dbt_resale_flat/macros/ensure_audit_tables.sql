{#-
    Run on-run-start. audit.quarantine is written by the validate stage; before it has ever
    run the table is absent, which means "nothing quarantined". Creating it empty lets staging
    and the reconciliation test read it unconditionally.
    A deliberate copy (dbt cannot import Python): the original is audit.quarantine in
    hdb_elt/warehouse.py (_DDL); tests/test_one_place_per_fact.py keeps the columns equal.
-#}
{% macro ensure_audit_tables() %}
create schema if not exists audit;
create table if not exists audit.quarantine (
    _load_id varchar,
    _source varchar,
    _source_row bigint,
    month varchar,
    rule varchar,
    detail varchar,
    quarantined_at timestamp
);
{% endmacro %}
