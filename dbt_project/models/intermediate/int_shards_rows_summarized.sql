{#-
    Per unit shard and per MES or service export about its units, a summary of their rows: how
    many, and the sum of their hashes, compared without when and in which batch they were landed.
    A table of its own (read by `int_shards_digested`) so that it is kept while those exports are
    as they were: an ECO digests the shards again without hashing every as-built row again.
-#}
{{ config(enabled=(target.type != 'spark')) }}

select shard, src, src || ':' || count(*) || ':' || sum(h::hugeint) as summary
from (
    select {{ shard_of('serial_number') }} as shard, 'units' as src, hash(t) as h
    from {{ without_landing('stg_mes__units') }} t
    union all
    select {{ shard_of('serial_number') }}, 'as_built', hash(t) from {{ without_landing('stg_mes__as_built_components') }} t
    union all
    select {{ shard_of('serial_number') }}, 'events', hash(t) from {{ without_landing('stg_service__service_events') }} t
    union all
    select {{ shard_of('serial_number') }}, 'installations', hash(t) from {{ without_landing('stg_service__installations') }} t
)
group by shard, src
