{#-
    Per unit shard, every part revision its units' MES and service rows name: built (an as-built
    row, or the unit's product) or swapped in the field (removed or installed by a service event).
    A table of its own for the reason given in `int_shards_rows_summarized`: a PLM change joins
    these few rows per shard with the changed revisions, not the as-built rows.
-#}
{{ config(enabled=(target.type != 'spark')) }}

select distinct {{ shard_of('serial_number') }} as shard, part_number, revision, built
from (
    select serial_number, part_number, revision, true as built from {{ ref('stg_mes__as_built_components') }}
    union all
    select serial_number, product_part_number, product_revision, true from {{ ref('stg_mes__units') }}
    union all
    select serial_number, removed_part_number, removed_revision, false from {{ ref('stg_service__service_events') }}
    union all
    select serial_number, installed_part_number, installed_revision, false from {{ ref('stg_service__service_events') }}
)
where part_number is not null
