{#-
    Run on-run-start. audit.quarantine is written by the validate stage; before it has ever
    run the table is absent, which means "nothing quarantined". Creating it empty lets staging
    and the reconciliation test read it unconditionally.
    Keep the columns EXACTLY as in hdb_elt/warehouse.py (tests/test_dbt_project.py checks).
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
