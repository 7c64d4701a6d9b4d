{#-
    Unit shards: per shard, a digest of everything the per-unit models read about its units (their
    MES rows, as-built rows, service events and installations, the designed structure of their
    effectivity class, and the revisions and ECOs of every part they were designed with, built
    with or fitted). Rows are compared without when and in which batch they were landed: a
    snapshot that re-lands unchanged rows changes no shard. DuckDB only: on Spark every build is
    whole (its Parquet tables cannot delete a shard).
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

    select distinct {{ shard_of('serial_number') }} as shard, part_number
    from (
        select serial_number, part_number from {{ ref('stg_mes__as_built_components') }}
        union all select serial_number, product_part_number from {{ ref('stg_mes__units') }}
        union all select serial_number, removed_part_number from {{ ref('stg_service__service_events') }}
        union all select serial_number, installed_part_number from {{ ref('stg_service__service_events') }}
        union all
        select c.serial_number, x.part_number
        from {{ ref('int_units_classified') }} c
        join (select distinct class_id, part_number from {{ ref('int_structures_exploded') }}) x using (class_id)
    )
    where part_number is not null

),

hashed as (

    select {{ shard_of('serial_number') }} as shard, 'units' as src, hash(t) as h
    from {{ without_landing('stg_mes__units') }} t
    union all
    select {{ shard_of('serial_number') }}, 'as_built', hash(t) from {{ without_landing('stg_mes__as_built_components') }} t
    union all
    select {{ shard_of('serial_number') }}, 'events', hash(t) from {{ without_landing('stg_service__service_events') }} t
    union all
    select {{ shard_of('serial_number') }}, 'installations', hash(t) from {{ without_landing('stg_service__installations') }} t
    union all
    select {{ shard_of('c.serial_number') }}, 'designed',
           hash(c.serial_number, c.effectivity_date, c.serial_prefix, k.h)
    from {{ ref('int_units_classified') }} c
    left join classes k using (class_id)
    union all
    select u.shard, 'parts', hash(u.part_number, p.h) from used u left join parts p using (part_number)

),

per_source as (

    select shard, src, count(*) as n, sum(h::hugeint) as h from hashed group by shard, src

)

select shard, md5(string_agg(src || ':' || n || ':' || h, '|' order by src)) as digest
from per_source
group by shard
