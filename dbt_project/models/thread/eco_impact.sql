{#- Every released ECO against every unit (not scrapped) that holds one of its parts.
    Rebuilt in two scopes: in the unit shards whose `impact` digest changed, every ECO; elsewhere,
    only the ECOs whose own rows changed (int_ecos_changed), so a new ECO costs its own rows, not
    those of every ECO in the shards it reaches. -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], meta={'shard_aspect': 'impact', 'eco_column': 'eco_number'},
          pre_hook="{{ delete_shards() }}", post_hook="{{ build_in_batches() }}") }}
{%- set rebuilt_shard = in_shards('serial_number') %}
{#- Unit u within ECO e's effectivity (false when a date or serial to compare is missing). -#}
{%- set within_effectivity -%}
    coalesce(case
        when e.effectivity_type = 'date' then u.effectivity_date >= e.effective_date
        else u.serial_prefix = e.effective_serial_prefix and u.serial_number >= e.effective_from
    end, false)
{%- endset %}
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

{#- Every affected part a unit uses (designed, built or held), and whether the unit builds with it or
    holds it: a unit is in an ECO's reach when it builds with or holds one of its parts. -#}
unit_parts as (

    select serial_number, part_number, bool_or(held) as held, bool_or(in_rebuilt_shard) as in_rebuilt_shard
    from (
        select serial_number, part_number, in_rebuilt_shard, false as held from designed
        union all
        select serial_number, part_number, in_rebuilt_shard, true from built
        union all
        select serial_number, part_number, in_rebuilt_shard, true from current_config
    ) used
    group by serial_number, part_number

),

{#- (ECO, unit, affected part the unit uses): in a rebuilt shard for every ECO, elsewhere for the
    changed ones; only where an impact is possible (within the effectivity, or an ECO that acts in
    the field): in a batch of 10,000 units at L, 59 % of the pairs in reach are neither, and
    assessing them was half of this model's time. -#}
relevant as (

    select
        i.eco_number, up.serial_number, i.part_number, i.from_revision, i.to_revision, up.held,
        e.field_action,
        {{ within_effectivity }} as is_within_effectivity
    from unit_parts up
    join items i using (part_number)
    join ecos e using (eco_number)
    join units u using (serial_number)
    where (up.in_rebuilt_shard or {{ in_ecos_changed('i.eco_number') }})
      and (e.field_action in ('retrofit', 'inspect') or {{ within_effectivity }})

),

{#- "Built with every to_revision": every affected part the unit uses is in its as-built at the
    to_revision. -#}
classified as (

    select
        r.eco_number,
        r.serial_number,
        r.is_within_effectivity,
        r.field_action,
        bool_and(b.serial_number is not null) as is_built_with_all,
        bool_or(c.serial_number is not null) as holds_from_revision
    from relevant r
    left join built b
      on b.serial_number = r.serial_number and b.part_number = r.part_number and b.revision = r.to_revision
    left join current_config c
      on c.serial_number = r.serial_number and c.part_number = r.part_number and c.revision = r.from_revision
    group by r.eco_number, r.serial_number, r.is_within_effectivity, r.field_action
    having bool_or(r.held)

),

impacts as (

    select
        eco_number,
        serial_number,
        case
            when is_within_effectivity then
                case when is_built_with_all then 'effective' else 'effective_not_built' end
            when field_action = 'retrofit' then
                case when holds_from_revision then 'retrofit_pending' else 'retrofitted' end
            when field_action = 'inspect' and holds_from_revision then 'inspect'
        end as impact,
        is_within_effectivity
    from classified

)

select eco_number, serial_number, impact, is_within_effectivity
from impacts
where impact is not null
