{#- Failures per part revision: the shards' counts (int_part_reliability_by_shard) summed. -#}
with counted as (

    select part_number, revision, sum(units_in_service) as units_in_service, sum(failures) as failures
    from {{ ref('int_part_reliability_by_shard') }}
    group by part_number, revision

)

select
    part_number,
    revision,
    cast(units_in_service as bigint) as units_in_service,
    cast(failures as bigint) as failures,
    case when units_in_service > 0 then cast(failures as double) * 100 / units_in_service end as failures_per_100_units
from counted
