{#- Designed vs built, per unit and part, for units that are completed or shipped. -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], meta={'shard_aspect': 'deviations'}, pre_hook="{{ delete_shards() }}",
          post_hook="{{ build_in_batches() }}") }}
with compared_units as (

    select serial_number from {{ ref('stg_mes__units') }}
    where status in ('completed', 'shipped') and {{ in_shards('serial_number') }}

),

designed as (

    select d.serial_number, d.part_number, d.revision, d.quantity
    from {{ ref('unit_as_designed') }} d
    semi join compared_units using (serial_number)

),

built as (

    select
        b.serial_number,
        b.part_number,
        {{ ordered_string_agg('b.revision', "','", 'b.revision') }} as revisions,
        count(*) as revision_count,
        sum(b.quantity) as quantity,
        bool_or(b.is_substitute) as is_substitute
    from {{ ref('unit_as_built') }} b
    semi join compared_units using (serial_number)
    group by b.serial_number, b.part_number

),

compared as (

    select
        coalesce(d.serial_number, b.serial_number) as serial_number,
        coalesce(d.part_number, b.part_number) as part_number,
        d.revision as designed_revision,
        b.revisions as built_revision,
        d.quantity as designed_quantity,
        b.quantity as built_quantity,
        case
            when b.part_number is null then 'missing'
            when d.part_number is null then 'unexpected'
            when d.revision is distinct from b.revisions then 'revision_mismatch'
            when abs(d.quantity - b.quantity) > 1e-9 then 'quantity_mismatch'
        end as deviation_type,
        coalesce(b.is_substitute, false) as is_substitute
    from designed d
    full outer join built b on b.serial_number = d.serial_number and b.part_number = d.part_number

)

select * from compared where deviation_type is not null
