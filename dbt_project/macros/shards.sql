{#-
    Unit shards: every model the size of the as-built fleet is stored as shards of consecutive
    serial numbers (a shard is a serial without its last `shard_digits` characters: HX200-000123
    is in shard HX200-000, with HX200-000000 .. HX200-000999). An incremental run rebuilds the
    shards whose inputs changed since the last successful build (`int_shards_changed`, from the
    digests in `int_shards_digested`, computed in the same run): a sharded model deletes and
    rebuilds just those. A first build, or `--full-refresh`, builds every shard.
-#}

{% macro shard_of(column) -%}
    left({{ column }}, greatest(length({{ column }}) - {{ var('shard_digits', 3) }}, 0))
{%- endmacro %}

{#- Rows of the shards to build only, on an incremental run; every row otherwise. The shards'
    enclosing serial range is written out as literals: a plain range reaches the scans (zone maps,
    Parquet statistics), the shard expression alone is evaluated on every input row. A model of a
    family (meta `shard_aspect`: built, configuration) rebuilds the shards whose digest of what
    that family reads changed; any other, the shards where anything changed. -#}
{% macro in_shards(column, aspect=none) -%}
    {#- Outside the condition, so that dbt sees the dependency when it parses the model (a dbt
        unit test, never incremental here, has no shard list among its given inputs). -#}
    {%- set to_build = ref('int_shards_changed') if target.type != 'spark' and model.resource_type != 'unit_test' else none -%}
    {%- if to_build is none -%}
        true
    {%- elif not is_incremental() -%}
        {#- A first build: the marks `build_in_batches` replaces with each batch's first and last
            shard (as they stand, an empty range: the model's first statement creates the table
            empty). The serial range lets the scans skip; the shard's own range is exact (a serial
            of one shard can sort inside another's range when serials differ in length). -#}
        {%- set first, last = shard_batch_marks() -%}
        {{ column }} >= {{ first }} and {{ column }} < ({{ last }} || chr(1114111))
        and {{ shard_of(column) }} between {{ first }} and {{ last }}
    {%- else -%}
        {%- set to_build = shards_to_build(aspect) -%}
        {%- set bounds = run_query("select min(shard), max(shard) from " ~ to_build) if execute else none -%}
        {%- if bounds is not none and bounds.rows[0][0] is not none -%}
        {{ column }} >= '{{ bounds.rows[0][0] | replace("'", "''") }}'
        and {{ column }} < ('{{ bounds.rows[0][1] | replace("'", "''") }}' || chr(1114111)) and
        {%- endif %}
        {{ shard_of(column) }} in {{ to_build }}
    {%- endif -%}
{%- endmacro %}

{#- The shards an incremental run rebuilds, as a subquery: those of `aspect`'s family (by default
    the model's meta `shard_aspect`), or where anything changed. -#}
{% macro shards_to_build(aspect=none) -%}
    {%- set aspect = aspect or model.config.get('meta', {}).get('shard_aspect') -%}
    (select shard from {{ ref('int_shards_changed') }}{% if aspect %} where {{ adapter.quote(aspect) }}{% endif %})
{%- endmacro %}

{#- The two literals a first build's `in_shards` writes for a batch's first and last shard: the
    first sorts after the last, so that the SQL as compiled selects no unit. -#}
{% macro shard_batch_marks() -%}
    {{ return(["'{shard batch: start}'", "'{shard batch: end}'"]) }}
{%- endmacro %}

{#- The post-hook of a sharded model: on a first build (or --full-refresh), its rows inserted a
    batch of consecutive shards at a time (var units_per_build_batch), its SQL run once per batch
    with the batch's serial range in place of `in_shards`' marks. A model's rows depend on its own
    units only (what lets a change rebuild shards), so the batches' rows are the whole build's;
    and its largest statements (the configuration replay, the deviations' full outer join) hold
    one batch in memory, not the fleet: at 100,000 units those did not fit 6 GB in one piece. -#}
{% macro build_in_batches() -%}
    {%- set digested = ref('int_shards_digested') if target.type != 'spark' else none -%}
    {%- if execute and digested is not none and not is_incremental() -%}
        {%- set per_batch = [1, (var('units_per_build_batch', 10000) // 10 ** var('shard_digits', 3)) | int] | max -%}
        {%- set batches = run_query(
            "select min(shard), max(shard) from (select shard, (row_number() over (order by shard) - 1) // "
            ~ per_batch ~ " as batch from " ~ digested ~ ") group by batch order by batch") -%}
        {%- set marks = shard_batch_marks() -%}
        {%- for batch in batches.rows -%}
            {%- set sql = model.compiled_code
                | replace(marks[0], "'" ~ batch[0] | replace("'", "''") ~ "'")
                | replace(marks[1], "'" ~ batch[1] | replace("'", "''") ~ "'") -%}
            {%- do run_query("insert into " ~ this ~ " " ~ sql) -%}
        {%- endfor -%}
    {%- endif -%}
    select 1
{%- endmacro %}

{#- On an incremental run, the ECOs whose rows are recomputed for every unit (int_ecos_changed:
    their own row or affected items changed); none otherwise (a first build computes every ECO in
    every shard). -#}
{% macro in_ecos_changed(column) -%}
    {%- set changed = ref('int_ecos_changed') if target.type != 'spark' and model.resource_type != 'unit_test' else none -%}
    {%- if not is_incremental() -%}
        false
    {%- else -%}
        {{ column }} in (select eco_number from {{ changed }})
    {%- endif -%}
{%- endmacro %}

{#- For eco_impact: the rows of per-unit `model` (its `columns`, and in_rebuilt_shard) of the parts
    an ECO affects in the shards being rebuilt (`rebuilt_shard`, an `in_shards` condition), and of
    the parts of the changed ECOs elsewhere: two scans, the first a serial range the scan can skip
    to. Reads the CTEs affected_parts and changed_parts of the model. -#}
{% macro affected_rows(model, columns, rebuilt_shard, where='true') -%}
    select {{ columns }}, true as in_rebuilt_shard
    from {{ ref(model) }}
    semi join affected_parts using (part_number)
    where {{ where }} and {{ rebuilt_shard }}
    union all
    select {{ columns }}, false
    from {{ ref(model) }}
    semi join changed_parts using (part_number)
    where {{ where }} and not ({{ rebuilt_shard }})
{%- endmacro %}

{#- The pre-hook of a sharded model: drop the shards about to be rebuilt (those of `aspect`'s
    digest, by default the model's meta `shard_aspect`), and with `eco_column` (by default meta
    `eco_column`) the rows of the ECOs about to be recomputed. A model of rows per shard rather
    than per unit names its `shard_column`. -#}
{% macro delete_shards(aspect=none, eco_column=none, shard_column=none) -%}
    {%- set eco_column = eco_column or model.config.get('meta', {}).get('eco_column') -%}
    {%- if is_incremental() and shard_column -%}
        delete from {{ this }} where {{ shard_column }} in {{ shards_to_build(aspect) }}
    {%- elif is_incremental() -%}
        delete from {{ this }} where ({{ in_shards('serial_number', aspect) }})
        {%- if eco_column %} or {{ in_ecos_changed(eco_column) }}{% endif %}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#- The families of sharded models (meta `shard_aspect`) and what each reads per shard: the
    sources of `int_shards_digested` its digest covers. A family rebuilds, and the publish
    replaces, only the shards where those changed (an ECO with a future effectivity changes the
    ECOs of the parts a shard uses, `parts`: neither the designed structures nor the deviations).
    - built (unit_as_built, unit_as_built_tree): MES rows, the BOM lines under the built revisions;
    - configuration (the configuration replay and what derives from it): MES rows, service
      events, the rows of the part revisions held or once held;
    - designed (unit_as_designed): MES rows, each unit's effectivity class and its structure;
    - deviations (unit_deviations): those, and the as-built rows;
    - impact (eco_impact, for its units): MES rows, as-built rows, service events, the revisions
      held, the designed structures. The ECOs themselves are digested per ECO (int_ecos_digested):
      a changed ECO is recomputed, and republished (meta `eco_column`), for every unit instead. -#}
{% macro shard_families() -%}
    {{ return({
        'built': ['units', 'as_built', 'tree'],
        'configuration': ['units', 'as_built', 'events', 'held'],
        'designed': ['units', 'designed'],
        'deviations': ['units', 'as_built', 'designed'],
        'impact': ['units', 'as_built', 'events', 'held', 'designed'],
    }) }}
{%- endmacro %}

{#- A staging model's rows without when and in which batch they were landed. -#}
{% macro without_landing(model) -%}
    (select * exclude (batch_id, extracted_at) from {{ ref(model) }})
{%- endmacro %}
