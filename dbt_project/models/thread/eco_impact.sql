{#- Every released ECO against every unit (not scrapped) that holds one of its parts.
    Rebuilt in two scopes: in the unit shards whose `impact` digest changed, every ECO; elsewhere,
    only the ECOs whose own rows changed (int_ecos_changed), so a new ECO costs its own rows, not
    those of every ECO in the shards it reaches. -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], meta={'shard_aspect': 'impact', 'eco_column': 'eco_number'},
          pre_hook="{{ delete_shards() }}", post_hook="{{ build_in_batches() }}") }}
{%- set rebuilt_shard = in_shards('serial_number') %}
with ecos as (

    select eco_number, effectivity_type, effective_from, field_action,
           case when effectivity_type = 'date' then try_cast(effective_from as date) end as effective_date,
           {{ serial_prefix('effective_from') }} as effective_serial_prefix
    from {{ ref('stg_plm__ecos') }}
    where state = 'released'

),

items as (

    select i.eco_number, i.part_number, i.from_revision, i.to_revision
    from {{ ref('stg_plm__eco_affected_items') }} i
    semi join ecos using (eco_number)

),

{#- Only rows of parts an ECO affects can matter below (every join is on an item's part): in a
    rebuilt shard, the parts of every released ECO (at 10,000 units, 40 % of the configuration
    rows); elsewhere, those of the changed ECOs. -#}
affected_parts as (

    select distinct part_number from items

),

changed_parts as (

    select distinct part_number from items where {{ in_ecos_changed('eco_number') }}

),

units as (

    select c.serial_number, c.effectivity_date, c.serial_prefix
    from {{ ref('int_units_classified') }} c
    join {{ ref('stg_mes__units') }} u using (serial_number)
    where u.status <> 'scrapped'

),

{#- Each in two scans (`affected_rows`): the rebuilt shards' rows, and the rows of the changed
    ECOs' parts in the other shards (empty on a first build). -#}
built as (

    {{ affected_rows('unit_as_built', 'serial_number, part_number, revision', rebuilt_shard) }}

),

current_config as (

    {{ affected_rows('unit_configuration', 'serial_number, part_number, revision', rebuilt_shard, 'quantity > 0') }}

),

designed as (

    {{ affected_rows('unit_as_designed', 'serial_number, part_number', rebuilt_shard) }}

),

{#- In a rebuilt shard every ECO, elsewhere the changed ones. -#}
touched as (

    select distinct i.eco_number, u.serial_number
    from items i
    join (
        select serial_number, part_number, in_rebuilt_shard from built
        union
        select serial_number, part_number, in_rebuilt_shard from current_config
    ) held on held.part_number = i.part_number
    join units u on u.serial_number = held.serial_number
    where held.in_rebuilt_shard or {{ in_ecos_changed('i.eco_number') }}

),

{#- "Built with every to_revision": every affected part the unit uses (designed, built or held)
    is in its as-built at the to_revision. -#}
unit_parts as (

    select serial_number, part_number from designed
    union
    select serial_number, part_number from built
    union
    select serial_number, part_number from current_config

),

relevant as (

    select t.eco_number, t.serial_number, i.part_number, i.from_revision, i.to_revision
    from touched t
    join items i on i.eco_number = t.eco_number
    join unit_parts up on up.serial_number = t.serial_number and up.part_number = i.part_number

),

assessed as (

    select
        r.eco_number,
        r.serial_number,
        bool_and(b.serial_number is not null) as is_built_with_all,
        bool_or(c.serial_number is not null) as holds_from_revision
    from relevant r
    left join built b
      on b.serial_number = r.serial_number and b.part_number = r.part_number and b.revision = r.to_revision
    left join current_config c
      on c.serial_number = r.serial_number and c.part_number = r.part_number and c.revision = r.from_revision
    group by r.eco_number, r.serial_number

),

classified as (

    select
        a.eco_number,
        a.serial_number,
        case
            when e.effectivity_type = 'date' then u.effectivity_date >= e.effective_date
            else u.serial_prefix = e.effective_serial_prefix and u.serial_number >= e.effective_from
        end as is_within_effectivity,
        e.field_action,
        a.is_built_with_all,
        a.holds_from_revision
    from assessed a
    join ecos e using (eco_number)
    join units u using (serial_number)

),

impacts as (

    select
        eco_number,
        serial_number,
        case
            when coalesce(is_within_effectivity, false) then
                case when is_built_with_all then 'effective' else 'effective_not_built' end
            when field_action = 'retrofit' then
                case when holds_from_revision then 'retrofit_pending' else 'retrofitted' end
            when field_action = 'inspect' and holds_from_revision then 'inspect'
        end as impact,
        coalesce(is_within_effectivity, false) as is_within_effectivity
    from classified

)

select eco_number, serial_number, impact, is_within_effectivity
from impacts
where impact is not null
