{#-
    The window of registration months a run rebuilds: --vars start_month / end_month, else
    the environment's HDB_DBT_START_MONTH / HDB_DBT_END_MONTH (how the pipeline passes it,
    hdb_elt.transform.window_env). --vars are part of what dbt checks before reusing its parsed
    project, so a new window in --vars re-parses the whole project; the environment is read
    only when the models run (execute), never while parsing, so a new window there does not.
    Values are checked against YYYY-MM before they reach any SQL; a bad value stops the run
    with a message saying what was wrong and what to pass instead.
-#}
{% macro month_window() %}
    {%- set window = {'start': none, 'end': none} -%}
    {%- for var_name, key in [('start_month', 'start'), ('end_month', 'end')] -%}
        {%- set value = var(var_name, none) -%}
        {%- if (value is none or (value | string | trim) == '') and execute -%}
            {%- set value = env_var('HDB_DBT_' ~ (var_name | upper), '') -%}
        {%- endif -%}
        {%- if value is not none and (value | string | trim) != '' -%}
            {%- set text = value | string | trim -%}
            {%- if not modules.re.match('^[0-9]{4}-(0[1-9]|1[0-2])$', text) -%}
                {{ exceptions.raise_compiler_error(
                    "--vars " ~ var_name ~ "=" ~ (value | string) ~ " is not a month: expected "
                    ~ "YYYY-MM, for example --vars '{start_month: \"2023-03\", end_month: \"2023-03\"}'."
                ) }}
            {%- endif -%}
            {%- do window.update({key: text}) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if window.start is not none and window.end is not none and window.start > window.end -%}
        {{ exceptions.raise_compiler_error(
            "--vars end_month=" ~ window.end ~ " is before start_month=" ~ window.start
            ~ ": the window must run forward in time."
        ) }}
    {%- endif -%}
    {{ return(window) }}
{% endmacro %}


{#-
    The window the pipeline's test stage records for a `dbt test` (which runs with no window,
    so that unit tests keep their own): DBT_ENV_CUSTOM_ENV_HDB_RUN_WINDOW, "YYYY-MM..YYYY-MM"
    (hdb_elt.transform.window_record). Read only when tests run (execute), never while parsing;
    anything but two months is no window.
-#}
{% macro recorded_run_window() %}
    {%- set window = {'start': none, 'end': none} -%}
    {%- if execute -%}
        {%- set recorded = env_var('DBT_ENV_CUSTOM_ENV_HDB_RUN_WINDOW', '') | trim -%}
        {%- set found = modules.re.match(
            '^([0-9]{4}-(0[1-9]|1[0-2]))[.][.]([0-9]{4}-(0[1-9]|1[0-2]))$', recorded
        ) -%}
        {%- if found -%}
            {%- do window.update({'start': found.group(1), 'end': found.group(3)}) -%}
        {%- endif -%}
    {%- endif -%}
    {{ return(window) }}
{% endmacro %}


{#-
    A SQL predicate on month_key choosing the months this run (re)builds in an incremental
    model that carries month_key and _loaded_at:
    - with a window in --vars: exactly the window's months;
    - otherwise, on an incremental run: every month whose latest accepted delivery
      (raw.latest_deliveries) is not the one the model holds (newer, or older when the newest
      was rejected), or that the model does not hold at all;
    - otherwise (first build, --full-refresh): every month. A window with --full-refresh is
      refused: the rebuilt table would lose every month outside the window.
    And on an incremental run, with or without a window, every month of a model built before
    the five resources were harmonised (rows with a null dataset_id, the column its pre-hook
    adds): those rows lack the new columns and today's spellings, so they are rebuilt once.
    The model's select and the replace_months strategy's delete both use it, so the months
    deleted are exactly the months inserted again.
-#}
{% macro months_to_rebuild(target_relation) %}
    {%- set window = month_window() -%}
    {%- set has_window = window.start is not none or window.end is not none -%}
    {%- if has_window and flags.FULL_REFRESH and not is_incremental() -%}
        {{ exceptions.raise_compiler_error(
            "--full-refresh rebuilds the table from scratch, so with a --vars window it would "
            ~ "hold only the window's months. Drop the window to rebuild every month, or drop "
            ~ "--full-refresh to rebuild just the window."
        ) }}
    {%- endif -%}
    {%- if not is_incremental() -%}
        {%- if has_window -%}
            month_key between '{{ window.start or "0001-01" }}' and '{{ window.end or "9999-12" }}'
        {%- else -%}
            true
        {%- endif -%}
    {%- else -%}
        (
        month_key in (
            -- months built before the harmonisation (the model's pre-hook adds dataset_id
            -- to such a table: null in their rows)
            select month_key from {{ target_relation }} where dataset_id is null
        )
        or
        {%- if has_window %}
        month_key between '{{ window.start or "0001-01" }}' and '{{ window.end or "9999-12" }}'
        {%- else %}
        month_key in (
            select deliveries.month_key
            from (
                -- one load per month in the view: every row of a month has its _loaded_at
                select distinct
                    trim(month) as month_key,
                    _loaded_at
                from {{ source('hdb', 'latest_deliveries') }}
            ) as deliveries
            left join (
                select
                    month_key,
                    max(_loaded_at) as _loaded_at
                from {{ target_relation }}
                group by 1
            ) as built
                on deliveries.month_key = built.month_key
            where deliveries._loaded_at is distinct from built._loaded_at
        )
        {%- endif %}
        )
    {%- endif -%}
{% endmacro %}
