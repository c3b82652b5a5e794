{#-
    Remaining lease in months, from data.gov.sg's free text:
      "61 years 04 months", "54 years 01 month", "54 years"  -> years * 12 + months
      "70"                                                   -> 70 years (2015-2016 files)
      empty (deliveries before 2015 carry only the lease commencement year)
        -> derived: a 99-year lease assumed to start in January of that year, less the
           months elapsed up to the registration month (so up to 11 months short).
    Anything else gives null, which the not_null test reports.
-#}
{% macro parse_remaining_lease_months(text_column, lease_year_column, month_column) %}
    case
        when regexp_matches(
            lower(trim({{ text_column }})), '^[0-9]+ *years?( +[0-9]+ *months?)?$'
        )
            then cast(regexp_extract(trim({{ text_column }}), '^([0-9]+)', 1) as integer) * 12
            + coalesce(
                try_cast(
                    nullif(
                        regexp_extract(lower(trim({{ text_column }})), '([0-9]+) *months?$', 1),
                        ''
                    ) as integer
                ),
                0
            )
        when regexp_matches(trim({{ text_column }}), '^[0-9]+$')
            then cast(trim({{ text_column }}) as integer) * 12
        when nullif(trim({{ text_column }}), '') is null
            then 99 * 12 - date_diff(
                'month', make_date({{ lease_year_column }}, 1, 1), {{ month_column }}
            )
    end
{% endmacro %}
