{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], meta={'shard_aspect': 'designed'}, pre_hook="{{ delete_shards() }}",
          post_hook="{{ build_in_batches() }}") }}
with units as (

    select serial_number, class_id from {{ ref('int_units_classified') }}
    where {{ in_shards('serial_number') }}

),

structures as (

    select * from {{ ref('int_structures_exploded') }} where not is_cycle

)

select
    u.serial_number,
    s.part_number,
    s.revision,
    s.quantity
from units u
join structures s using (class_id)
