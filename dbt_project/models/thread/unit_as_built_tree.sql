{#- The as-built structure as a tree: each part revision MES built into a unit under the
    assembly whose BOM places it (the parent's built revision, by find number). A recursive
    query from the product row (no parent) walks it; docs/thread-schema.md has one. A built part
    that no built assembly's BOM places hangs from no parent, beside the product. -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], meta={'shard_aspect': 'built'}, pre_hook="{{ delete_shards() }}",
          post_hook="{{ build_in_batches() }}") }}
with built as (

    select serial_number, part_number, revision, quantity
    from {{ ref('unit_as_built') }}
    where {{ in_shards('serial_number') }}

),

bom as (

    select parent_part_number, parent_revision, find_number, child_part_number, quantity
    from {{ ref('stg_plm__bom_lines') }}

),

placed as (

    select
        c.serial_number,
        p.part_number as parent_part_number,
        p.revision as parent_revision,
        b.find_number,
        c.part_number,
        c.revision,
        b.quantity as quantity_per_parent,
        c.quantity as built_quantity
    from built c
    join bom b on b.child_part_number = c.part_number
    join built p
      on p.serial_number = c.serial_number
     and p.part_number = b.parent_part_number
     and p.revision = b.parent_revision

)

select * from placed

union all

select
    c.serial_number, null, null, null, c.part_number, c.revision, null, c.quantity
from built c
anti join placed p using (serial_number, part_number, revision)
