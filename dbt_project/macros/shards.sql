{#-
    Unit shards: every model the size of the as-built fleet is stored as shards of consecutive
    serial numbers (a shard is a serial without its last `shard_digits` characters: HX200-000123
    is in shard HX200-000, with HX200-000000 .. HX200-000999). The orchestration passes the shards
    whose inputs changed as `--vars '{"shards": [...]}'`; a sharded model then deletes and rebuilds
    just those. Without the variable (the first build, a code change, `dbt build` by hand) every
    shard is rebuilt.
-#}

{% macro shard_of(column) -%}
    left({{ column }}, greatest(length({{ column }}) - {{ var('shard_digits', 3) }}, 0))
{%- endmacro %}

{#- Rows of these shards only, on an incremental run with a shard list; every row otherwise. -#}
{% macro in_shards(column) -%}
    {%- set shards = var('shards', none) -%}
    {%- if not is_incremental() or shards is none -%}
        true
    {%- elif shards | length == 0 -%}
        false
    {%- else -%}
        {{ shard_of(column) }} in ({% for s in shards %}'{{ s | replace("'", "''") }}'{{ "," if not loop.last }}{% endfor %})
    {%- endif -%}
{%- endmacro %}

{#- The pre-hook of a sharded model: drop the shards about to be rebuilt (all, without a list). -#}
{% macro delete_shards() -%}
    {%- if is_incremental() -%}
        delete from {{ this }} where {{ in_shards('serial_number') }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
