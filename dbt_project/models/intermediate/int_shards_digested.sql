{#-
    Unit shards: per shard, a digest of everything the per-unit models read about its units (their
    MES rows, as-built rows, service events and installations, the designed structure of their
    effectivity class, the revisions and ECOs of every part they were designed with, built with
    or fitted, and the BOM lines under the revisions they were built with). Rows are compared
    without when and in which batch they were landed: a snapshot that re-lands unchanged rows
    changes no shard. DuckDB only: on Spark every build is whole (its Parquet tables cannot
    delete a shard).

    A narrower digest per shard for each family of per-unit models, of just what that family reads
    (`shard_families` in macros/shards.sql; a model names its family in meta `shard_aspect`, the
    others read everything).

    What depends on MES and service rows alone (the rows' summaries, the part revisions they name)
    is in tables of its own, kept while those exports are as they were.
-#}
{{ config(enabled=(target.type != 'spark')) }}

with classes as (

    select class_id, sum(hash(x)::hugeint) as h
    from {{ ref('int_structures_exploded') }} x
    group by 1

),

parts as (

    select part_number, sum(h::hugeint) as h
    from (
        select part_number, hash(r) as h from {{ without_landing('stg_plm__part_revisions') }} r
        union all
        select i.part_number, hash(i, e)
        from {{ without_landing('stg_plm__eco_affected_items') }} i
        join {{ without_landing('stg_plm__ecos') }} e using (eco_number)
    )
    group by 1

),

used as (

    select distinct shard, part_number
    from (
        select shard, part_number from {{ ref('int_shards_parts_named') }}
        union all
        select {{ shard_of('c.serial_number') }}, x.part_number
        from {{ ref('int_units_classified') }} c
        join (select distinct class_id, part_number from {{ ref('int_structures_exploded') }}) x using (class_id)
    )
    where part_number is not null

),

held as (

    select distinct shard, part_number, revision from {{ ref('int_shards_parts_named') }}

),

hashed as (

    select {{ shard_of('c.serial_number') }} as shard, 'designed' as src,
           hash(c.serial_number, c.effectivity_date, c.serial_prefix, k.h) as h
    from {{ ref('int_units_classified') }} c
    left join classes k using (class_id)
    union all
    select u.shard, 'parts', hash(u.part_number, p.h) from used u left join parts p using (part_number)
    union all
    select b.shard, 'tree', hash(l)
    from (select distinct shard, part_number, revision from {{ ref('int_shards_parts_named') }} where built) b
    join {{ without_landing('stg_plm__bom_lines') }} l
      on l.parent_part_number = b.part_number and l.parent_revision = b.revision
    union all
    -- a revision nobody has a row for counts too: its row arriving changes the replay
    select h.shard, 'held', hash(h.part_number, h.revision, r)
    from held h
    left join {{ without_landing('stg_plm__part_revisions') }} r using (part_number, revision)

),

per_source as (

    select shard, src, summary from {{ ref('int_shards_rows_summarized') }}
    union all
    select shard, src, src || ':' || count(*) || ':' || sum(h::hugeint) as summary
    from hashed
    group by shard, src

)

select
    shard,
    md5(string_agg(summary, '|' order by src)) as digest
    {%- for family, sources in shard_families().items() %},
    md5(coalesce(string_agg(summary, '|' order by src)
                 filter (where src in ('{{ sources | join("', '") }}')), '')) as digest_{{ family }}
    {%- endfor %}
from per_source
group by shard
