{#-
    Every change to a unit's configuration, in order (with the lot or serial of what an
    installation brought in, null when untracked): MES installs (as-built rows at their
    installed_at, the product at build_started_at) and service swaps in (occurred_at, event_id)
    order, a removal before the installation of the same event.

    A removal with a null removed_revision takes the earliest-released revision held; removing
    what is not held changes nothing (resolved_delta 0, reported as a violation). Which revision a
    removal takes depends on what came before, so (unit, part) pairs touched by a removal are
    replayed step by step; all other pairs only ever add and pass straight through.
-#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          tags=['sharded'], meta={'shard_aspect': 'configuration'}, pre_hook="{{ delete_shards() }}",
          post_hook="{{ build_in_batches() }}") }}
with recursive

units as (

    select serial_number, product_part_number, product_revision, build_started_at
    from {{ ref('stg_mes__units') }}
    where {{ in_shards('serial_number') }}

),

revisions as (

    select part_number, revision, released_at from {{ ref('stg_plm__part_revisions') }}

),

swaps as (

    select e.*
    from {{ ref('stg_service__service_events') }} e
    where (e.removed_part_number is not null or e.installed_part_number is not null)
      and e.serial_number in (select serial_number from units)

),

ops as (

    select
        a.serial_number, a.part_number, a.revision, a.quantity as delta,
        coalesce(a.installed_at, u.build_started_at) as changed_at,
        'mes' as changed_by, 0 as source_order, 1 as op_order, 'add' as op,
        nullif(a.component_serial, '-') as component_serial
    from {{ ref('stg_mes__as_built_components') }} a
    join units u on u.serial_number = a.serial_number

    union all

    select
        serial_number, product_part_number, product_revision, 1.0,
        build_started_at, 'mes', 0, 1, 'add', null
    from units

    union all

    select
        serial_number, removed_part_number, removed_revision, -1.0,
        occurred_at, event_id, 1, 0, 'remove', null
    from swaps
    where removed_part_number is not null

    union all

    select
        serial_number, installed_part_number, installed_revision, 1.0,
        occurred_at, event_id, 1, 1, 'add', nullif(installed_component_serial, '-')
    from swaps
    where installed_part_number is not null

),

sequenced as (

    select
        o.*,
        -- Unknown revisions count as the latest released when choosing "the earliest held".
        coalesce(r.released_at, cast('9999-12-31' as {{ timestamptz() }})) as rank_released_at,
        row_number() over (
            partition by o.serial_number, o.part_number
            order by o.changed_at, o.source_order, o.changed_by, o.op_order, o.revision, o.component_serial
        ) as step
    from ops o
    left join revisions r on r.part_number = o.part_number and r.revision = o.revision

),

touched as (

    select distinct serial_number, part_number from sequenced where op = 'remove'

),

replay_input as (

    select s.* from sequenced s semi join touched t using (serial_number, part_number)

),

replay (serial_number, part_number, step, state, resolved_revision, resolved_delta) as (

    select
        serial_number,
        part_number,
        0,
        {{ empty_struct_list('released_at', timestamptz(), 'revision', 'string', 'quantity', 'double') }},
        cast(null as string),
        cast(0.0 as double)
    from touched

    union all

    select
        o.serial_number,
        o.part_number,
        o.step,
        case
            when o.op = 'add' and {{ list_any('r.state', 'x', 'x.revision = o.revision') }}
                then {{ list_map('r.state', 'x', make_struct(
                    'released_at', 'x.released_at',
                    'revision', 'x.revision',
                    'quantity', 'x.quantity + case when x.revision = o.revision then o.delta else 0 end')) }}
            when o.op = 'add'
                then {{ list_append('r.state', make_struct(
                    'released_at', 'o.rank_released_at', 'revision', 'o.revision', 'quantity', 'o.delta')) }}
            else {{ list_map('r.state', 'x', make_struct(
                    'released_at', 'x.released_at',
                    'revision', 'x.revision',
                    'quantity', 'x.quantity - case when x.revision = ' ~ removal_target('r.state', 'o.revision')
                                ~ ' then 1 else 0 end')) }}
        end,
        case when o.op = 'add' then o.revision else {{ removal_target('r.state', 'o.revision') }} end,
        case
            when o.op = 'add' then o.delta
            when {{ removal_target('r.state', 'o.revision') }} is null then 0.0
            else -1.0
        end
    from replay r
    join replay_input o
      on o.serial_number = r.serial_number and o.part_number = r.part_number and o.step = r.step + 1

),

replayed as (

    select
        s.serial_number, s.part_number, s.step, s.changed_at, s.changed_by, s.op,
        s.revision as recorded_revision,
        r.resolved_revision as revision,
        r.resolved_delta as delta,
        s.component_serial
    from replay r
    join replay_input s using (serial_number, part_number, step)

),

passed_through as (

    select
        s.serial_number, s.part_number, s.step, s.changed_at, s.changed_by, s.op,
        s.revision as recorded_revision,
        s.revision,
        s.delta,
        s.component_serial
    from sequenced s
    anti join touched t using (serial_number, part_number)

)

select * from replayed
union all
select * from passed_through
