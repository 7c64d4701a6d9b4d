{#-
    The shards an incremental run of the per-unit models rebuilds: those whose digest differs from
    the one of the last successful build (`main.shard_digests_built`, kept by the orchestration;
    empty in a new build database, so every shard), appeared or gone; and of those, the ones whose
    narrower digests differ (a column per family in `shard_families`: what that family rebuilds);
    on a --full-refresh, every shard.
    Every sharded model depends on it through the `in_shards` macro, so dbt computes it first, in
    the same run.
-#}
{{ config(enabled=(target.type != 'spark')) }}

{#- A --full-refresh rebuilds every shard of every family, whatever the digests say (the tests of
    the rows written read this list too). #}
{%- set everything = flags.FULL_REFRESH %}
select
    coalesce(n.shard, b.shard) as shard
    {%- for family in shard_families() %},
    {{ 'true' if everything else 'n.digest_' ~ family ~ ' is distinct from b.digest_' ~ family }}
        as {{ family }}
    {%- endfor %}
from {{ ref('int_shards_digested') }} n
full outer join main.shard_digests_built b on n.shard = b.shard
where {{ 'true' if everything else 'n.digest is distinct from b.digest' }}
