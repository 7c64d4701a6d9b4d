{#- Periods during which a unit held a quantity of one part revision. A change at the same
    instant by the same source is one change; a period ends when the quantity changes again. -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], pre_hook="{{ delete_shards() }}",
          post_hook="{{ build_in_batches() }}",
          meta={'shard_aspect': 'configuration', 'published_order': 'part_number, serial_number, valid_from'}) }}
with changes as (

    select
        serial_number, part_number, revision, changed_at, changed_by,
        sum(delta) as delta,
        min(step) as step
    from {{ ref('int_configuration_changes_resolved') }}
    where delta <> 0 and {{ in_shards('serial_number') }}
    group by serial_number, part_number, revision, changed_at, changed_by

),

running as (

    select
        *,
        round(sum(delta) over (
            partition by serial_number, part_number, revision order by changed_at, step
            rows between unbounded preceding and current row), 9) as quantity,
        -- (Spark allows no frame on lead)
        lead(changed_at) over (partition by serial_number, part_number, revision order by changed_at, step)
            as next_change_at
    from changes

)

select
    serial_number,
    part_number,
    revision,
    quantity,
    changed_at as valid_from,
    next_change_at as valid_to,
    changed_by
from running
where quantity > 1e-9
  and (next_change_at is null or next_change_at > changed_at)
