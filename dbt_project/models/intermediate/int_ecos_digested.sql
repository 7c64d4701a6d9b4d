{#-
    Per ECO, a digest of what its rows of `eco_impact` are computed from besides the units: its
    own row and its affected items (compared without when and in which batch they were landed).
    An ECO whose digest differs from the last successful build's (`int_ecos_changed`) has its
    impact recomputed for every unit; a unit shard whose `impact` digest changed, for every ECO.
    So a new ECO costs its own rows, not those of every ECO in the shards it reaches. DuckDB only.
-#}
{{ config(enabled=(target.type != 'spark')) }}

with hashed as (

    select eco_number, hash(e) as h from {{ without_landing('stg_plm__ecos') }} e
    union all
    select eco_number, hash(i) from {{ without_landing('stg_plm__eco_affected_items') }} i

)

select eco_number, count(*) || ':' || sum(h::hugeint) as digest
from hashed
group by eco_number
