{#- Genealogy: where every tracked lot or serial number went. One row per installation of a
    tracked item in a unit: by MES at build, or by a service event later. Removals do not name
    the lot or serial they take, so a removal takes, of the revision it resolves to, the piece of
    that unit installed first (first in, first out; untracked pieces count too); an installation
    ends when its last piece is removed. -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], pre_hook="{{ delete_shards() }}",
          post_hook="{{ build_in_batches() }}",
          meta={'shard_aspect': 'configuration', 'published_order': 'part_number, component_serial, serial_number, installed_at'}) }}
with changes as (

    select serial_number, part_number, revision, step, changed_at, changed_by, op, delta, component_serial
    from {{ ref('int_configuration_changes_resolved') }}
    where delta <> 0 and {{ in_shards('serial_number') }}

),

{#- Only a revision of which some piece was tracked needs the counting below (at 10,000 units a
    sixth of the installations are tracked). -#}
tracked as (

    select distinct serial_number, part_number, revision from changes
    where op = 'add' and component_serial is not null

),

installed as (

    select
        *,
        -- pieces of this revision installed in the unit up to and including this installation
        round(sum(delta) over (
            partition by serial_number, part_number, revision
            order by step rows between unbounded preceding and current row), 9) as installed_through
    from changes
    semi join tracked using (serial_number, part_number, revision)
    where op = 'add'

),

removals as (

    select
        serial_number, part_number, revision, changed_at, changed_by,
        row_number() over (partition by serial_number, part_number, revision order by step) as removal_number,
        count(*) over (partition by serial_number, part_number, revision) as removals
    from changes
    semi join tracked using (serial_number, part_number, revision)
    where op = 'remove'

)

select
    i.serial_number,
    i.part_number,
    i.revision,
    i.component_serial,
    i.delta as quantity,
    i.changed_at as installed_at,
    i.changed_by as installed_by,
    final_removal.changed_at as removed_at,
    final_removal.changed_by as removed_by,
    round(greatest(0, least(i.delta, i.installed_through - coalesce(n.removals, 0))), 9) as quantity_held
from installed i
left join (select distinct serial_number, part_number, revision, removals from removals) n
    using (serial_number, part_number, revision)
-- first in, first out: the removal that takes this installation's last piece
left join removals final_removal
    on final_removal.serial_number = i.serial_number
   and final_removal.part_number = i.part_number
   and final_removal.revision = i.revision
   and final_removal.removal_number = ceil(i.installed_through)
where i.component_serial is not null
