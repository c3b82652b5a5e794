{#- The eleven source columns of data.gov.sg, in delivery order (hdb_elt.warehouse.SOURCE_COLUMNS). -#}
{% macro source_columns() %}
    {{ return([
        'month', 'town', 'flat_type', 'block', 'street_name', 'storey_range',
        'floor_area_sqm', 'flat_model', 'lease_commence_date', 'remaining_lease',
        'resale_price',
    ]) }}
{% endmacro %}
