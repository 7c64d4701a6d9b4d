{#-
    What differs between the engines the thread builds on (THREAD_ENGINE): embedded DuckDB, the
    default, and Apache Spark (dbt-spark). Models call these instead of either dialect's own
    spelling; nothing else in the project knows which engine runs it.
-#}

{#- Before every dbt run. -#}
{% macro thread_run_start() -%}
    {%- if target.type == 'spark' -%}
        {{ spark_raw_tables() }}
    {%- else -%}
        create table if not exists main.shard_digests_built (shard varchar, digest varchar);
        {#- a build database from before a family's digest: none of its shards has one yet -#}
        {%- for family in shard_families() %}
        alter table main.shard_digests_built add column if not exists digest_{{ family }} varchar;
        {%- endfor %}
        create table if not exists main.eco_digests_built (eco_number varchar, digest varchar);
        create table if not exists main.fleet_health_days_built (day date, digest varchar)
    {%- endif -%}
{%- endmacro %}

{#- Spark reads no Delta here (delta-spark's jars come only from Maven): the orchestration links
    each raw Delta table's current files into <spark_dir>/raw/<relation>, and these Parquet tables
    read them. Recreated each run, so a column a contract added is seen. -#}
{% macro spark_raw_tables() -%}
    {%- if execute -%}
        {#- dbt's graph is there at run time only -#}
        {%- set relations = [] -%}
        {%- for source in graph.sources.values() if source.schema == 'raw' -%}
            {%- do relations.append(source.identifier) -%}
        {%- endfor -%}
        {%- do run_query("create database if not exists raw") -%}
        {%- for relation in relations | unique | sort -%}
            {%- do run_query("drop table if exists raw." ~ relation) -%}
            {%- do run_query("create table raw." ~ relation ~ " using parquet location '"
                             ~ var("spark_dir", "../data/build/spark") ~ "/raw/" ~ relation ~ "'") -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{#- Parquet tables cannot enforce NOT NULL (only Delta can); the not_null tests still check it. -#}
{% macro spark__alter_column_set_constraints(relation, column_dict) -%}
{%- endmacro %}

{#- A timestamp with time zone: DuckDB's TIMESTAMPTZ, Spark's TIMESTAMP (its session is UTC). -#}
{% macro timestamptz() -%}
    {{ 'timestamp' if target.type == 'spark' else 'timestamptz' }}
{%- endmacro %}

{#- Seconds since the epoch, as a double. -#}
{% macro epoch_seconds(ts) -%}
    {%- if target.type == 'spark' -%} (unix_micros({{ ts }}) / 1e6) {%- else -%} epoch({{ ts }}) {%- endif -%}
{%- endmacro %}

{#- Text of a value for a change hash: the same text on every engine (their casts to text differ
    for doubles and timestamps). -#}
{% macro hash_text(expr, kind='text') -%}
    {%- if kind == 'double' -%}
        cast(cast({{ expr }} as decimal(38, 9)) as string)
    {%- elif kind == 'timestamp' -%}
        {%- if target.type == 'spark' -%}
            date_format({{ expr }}, "yyyy-MM-dd'T'HH:mm:ss.SSSSSS")
        {%- else -%}
            strftime({{ expr }}, '%Y-%m-%dT%H:%M:%S.%f')
        {%- endif -%}
    {%- else -%}
        cast({{ expr }} as string)
    {%- endif -%}
{%- endmacro %}

{#- A hash of a group's rows in any order: their count and the sum of their hashes. For hashes
    the twin layer compares with others the same engine made (the twin inputs): the text of each
    row sorted and joined (ordered_string_agg) is the same on every engine, but sorting a unit's
    ~400 component rows to hash them was a third of the change set's cost at 100,000 units. -#}
{% macro rows_hash(columns) -%}
    {%- if target.type == 'spark' -%}
        concat(cast(count(*) as string), ':', cast(sum(cast(hash({{ columns | join(', ') }}) as decimal(38, 0))) as string))
    {%- else -%}
        count(*) || ':' || sum(hash({{ columns | join(', ') }})::hugeint)
    {%- endif -%}
{%- endmacro %}

{#- string_agg in a given order. -#}
{% macro ordered_string_agg(expr, separator, order_by) -%}
    {%- if target.type == 'spark' -%}
        listagg({{ expr }}, {{ separator }}) within group (order by {{ order_by }})
    {%- elif expr == order_by -%}
        {#- The same text, without DuckDB's ordered aggregate: with about one row per group (a
            unit's revisions of one part) that took 7.3 s of unit_deviations at 10,000 units, this 2.1 s. -#}
        array_to_string(list_sort(list({{ expr }}) filter (where {{ expr }} is not null)), {{ separator }})
    {%- else -%}
        string_agg({{ expr }}, {{ separator }} order by {{ order_by }})
    {%- endif -%}
{%- endmacro %}

{#- Lists (arrays) of values. `var` names the element in `expr`. -#}
{% macro list_of() -%}
    {%- if target.type == 'spark' -%} array({{ varargs | join(', ') }}) {%- else -%} [{{ varargs | join(', ') }}] {%- endif -%}
{%- endmacro %}

{% macro list_map(list, var, expr) -%}
    {%- if target.type == 'spark' -%}
        transform({{ list }}, {{ var }} -> {{ expr }})
    {%- else -%}
        list_transform({{ list }}, lambda {{ var }}: {{ expr }})
    {%- endif -%}
{%- endmacro %}

{% macro list_where(list, var, condition) -%}
    {%- if target.type == 'spark' -%}
        filter({{ list }}, {{ var }} -> {{ condition }})
    {%- else -%}
        list_filter({{ list }}, lambda {{ var }}: {{ condition }})
    {%- endif -%}
{%- endmacro %}

{#- True when some element satisfies the condition (false for an empty list). -#}
{% macro list_any(list, var, condition) -%}
    {%- if target.type == 'spark' -%}
        exists({{ list }}, {{ var }} -> {{ condition }})
    {%- else -%}
        coalesce(list_bool_or(list_transform({{ list }}, lambda {{ var }}: {{ condition }})), false)
    {%- endif -%}
{%- endmacro %}

{% macro list_append(list, element) -%}
    {%- if target.type == 'spark' -%} array_append({{ list }}, {{ element }}) {%- else -%} list_append({{ list }}, {{ element }}) {%- endif -%}
{%- endmacro %}

{% macro list_join(list, separator) -%}
    {%- if target.type == 'spark' -%} array_join({{ list }}, {{ separator }}) {%- else -%} array_to_string({{ list }}, {{ separator }}) {%- endif -%}
{%- endmacro %}

{% macro list_len(list) -%}
    {%- if target.type == 'spark' -%} size({{ list }}) {%- else -%} len({{ list }}) {%- endif -%}
{%- endmacro %}

{% macro list_has(list, element) -%}
    {%- if target.type == 'spark' -%} array_contains({{ list }}, {{ element }}) {%- else -%} list_contains({{ list }}, {{ element }}) {%- endif -%}
{%- endmacro %}

{#- The smallest element (structs compare field by field), null for an empty list. -#}
{% macro list_min(list) -%}
    {%- if target.type == 'spark' -%} array_min({{ list }}) {%- else -%} (list_sort({{ list }}))[1] {%- endif -%}
{%- endmacro %}

{#- A struct from name=value pairs, given as alternating arguments: make_struct('a', x, 'b', y). -#}
{% macro make_struct() -%}
    {%- set pairs = [] -%}
    {%- for i in range(0, varargs | length, 2) -%}
        {%- if target.type == 'spark' -%}
            {%- do pairs.append("'" ~ varargs[i] ~ "', " ~ varargs[i + 1]) -%}
        {%- else -%}
            {%- do pairs.append(varargs[i] ~ " := " ~ varargs[i + 1]) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if target.type == 'spark' -%} named_struct({{ pairs | join(', ') }}) {%- else -%} struct_pack({{ pairs | join(', ') }}) {%- endif -%}
{%- endmacro %}

{#- An empty list of structs with the given fields: empty_struct_list('a', 'double', 'b', 'string'). -#}
{% macro empty_struct_list() -%}
    {%- set fields = [] -%}
    {%- for i in range(0, varargs | length, 2) -%}
        {%- if target.type == 'spark' -%}
            {%- do fields.append(varargs[i] ~ ": " ~ varargs[i + 1]) -%}
        {%- else -%}
            {%- do fields.append(varargs[i] ~ " " ~ varargs[i + 1]) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if target.type == 'spark' -%}
        cast(array() as array<struct<{{ fields | join(', ') }}>>)
    {%- else -%}
        []::struct({{ fields | join(', ') }})[]
    {%- endif -%}
{%- endmacro %}
