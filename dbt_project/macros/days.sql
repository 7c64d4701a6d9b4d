{#-
    `fleet_health_daily` is stored by day: an incremental run rebuilds the days whose digest
    (`int_fleet_health_days_digested`) differs from the one their rows were built from, kept in
    `main.fleet_health_days_built` by the model's post-hook. A first build, `--full-refresh` and
    every build on Spark compute every day.
-#}

{#- The days to rebuild: digest changed, new, or gone. -#}
{% macro fleet_health_days_to_build() -%}
    (select coalesce(n.day, b.day) as day
     from {{ ref('int_fleet_health_days_digested') }} n
     full outer join main.fleet_health_days_built b on n.day = b.day
     where n.digest is distinct from b.digest)
{%- endmacro %}

{#- Readings (column `ts`) of the days to rebuild on an incremental run; every one otherwise. The
    days' enclosing range is written out as literals, so that the scans skip the other days' files. -#}
{% macro in_fleet_health_days(ts) -%}
    {#- Outside the condition, so that dbt sees the dependency when it parses the model. -#}
    {%- set digests = ref('int_fleet_health_days_digested') if target.type != 'spark' and model.resource_type != 'unit_test' else none -%}
    {%- if not is_incremental() -%}
        true
    {%- else -%}
        {%- set bounds = run_query("select min(day)::varchar, max(day)::varchar from " ~ fleet_health_days_to_build()) if execute else none -%}
        {%- if bounds is not none and bounds.rows[0][0] is not none -%}
        {{ ts }} >= date '{{ bounds.rows[0][0] }}' and {{ ts }} < date '{{ bounds.rows[0][1] }}' + 1 and
        {%- endif %}
        cast({{ ts }} as date) in (select day from {{ fleet_health_days_to_build() }})
    {%- endif -%}
{%- endmacro %}

{% macro delete_fleet_health_days() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where day in (select day from {{ fleet_health_days_to_build() }})
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{% macro keep_fleet_health_days_built() -%}
    {%- if target.type == 'spark' -%}
        select 1
    {%- else -%}
        create or replace table main.fleet_health_days_built as
        select day, digest from {{ ref('int_fleet_health_days_digested') }}
    {%- endif -%}
{%- endmacro %}
