{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], meta={'shard_aspect': 'built'}, pre_hook="{{ delete_shards() }}",
          post_hook="{{ build_in_batches() }}") }}
with components as (

    select serial_number, part_number, revision, quantity, is_substitute
    from {{ ref('stg_mes__as_built_components') }}
    where {{ in_shards('serial_number') }}

),

products as (

    select serial_number, product_part_number as part_number, product_revision as revision,
           1.0::double as quantity, false as is_substitute
    from {{ ref('stg_mes__units') }}
    where {{ in_shards('serial_number') }}

)

select
    serial_number,
    part_number,
    revision,
    sum(quantity) as quantity,
    bool_or(is_substitute) as is_substitute
from (select * from components union all select * from products)
group by serial_number, part_number, revision
