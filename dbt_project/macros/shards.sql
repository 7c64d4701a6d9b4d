{#-
    Unit shards: every model the size of the as-built fleet is stored as shards of consecutive
    serial numbers (a shard is a serial without its last `shard_digits` characters: HX200-000123
    is in shard HX200-000, with HX200-000000 .. HX200-000999). Before an incremental run the
    orchestration writes the shards whose inputs changed into `main.shards_to_build` of the build
    database (a table, not a variable: a variable that changes every run would make dbt parse the
    whole project again each time); a sharded model then deletes and rebuilds just those. A first
    build, or `--full-refresh`, builds every shard.
-#}

{% macro shard_of(column) -%}
    left({{ column }}, greatest(length({{ column }}) - {{ var('shard_digits', 3) }}, 0))
{%- endmacro %}

{#- Rows of the shards to build only, on an incremental run; every row otherwise. The shards'
    enclosing serial range is written out as literals: a plain range reaches the scans (zone maps,
    Parquet statistics), the shard expression alone is evaluated on every input row. -#}
{% macro in_shards(column) -%}
    {%- if not is_incremental() -%}
        true
    {%- else -%}
        {%- set bounds = run_query("select min(shard), max(shard) from main.shards_to_build") if execute else none -%}
        {%- if bounds is not none and bounds.rows[0][0] is not none -%}
        {{ column }} >= '{{ bounds.rows[0][0] | replace("'", "''") }}'
        and {{ column }} < ('{{ bounds.rows[0][1] | replace("'", "''") }}' || chr(1114111)) and
        {%- endif %}
        {{ shard_of(column) }} in (select shard from main.shards_to_build)
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook of a sharded model: drop the shards about to be rebuilt. -#}
{% macro delete_shards() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ in_shards('serial_number') }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
