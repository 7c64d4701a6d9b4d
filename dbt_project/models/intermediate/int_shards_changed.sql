{#-
    The shards an incremental run of the per-unit models rebuilds: those whose digest differs from
    the one of the last successful build (`main.shard_digests_built`, kept by the orchestration;
    empty in a new build database, so every shard), appeared or gone; and of those, the ones whose
    narrower digests differ (`built`, `configuration`: what the models of that family rebuild).
    Every sharded model depends on it through the `in_shards` macro, so dbt computes it first, in
    the same run.
-#}
{{ config(enabled=(target.type != 'spark')) }}

select
    coalesce(n.shard, b.shard) as shard,
    n.digest_built is distinct from b.digest_built as built,
    n.digest_configuration is distinct from b.digest_configuration as configuration
from {{ ref('int_shards_digested') }} n
full outer join main.shard_digests_built b on n.shard = b.shard
where n.digest is distinct from b.digest
