{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], meta={'shard_aspect': 'configuration'}, pre_hook="{{ delete_shards() }}",
          post_hook="{{ build_in_batches() }}") }}
select
    serial_number,
    part_number,
    revision,
    quantity,
    valid_from,
    valid_to,
    changed_by
from {{ ref('unit_configuration_history') }}
where valid_to is null and {{ in_shards('serial_number') }}
