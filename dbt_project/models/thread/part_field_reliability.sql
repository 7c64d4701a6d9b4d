{#- Failures per part revision, each failure attributed to the revision(s) the unit held when it
    happened: the configuration just before the failure event, so that a repair recorded on the
    failure event itself (removing the failed part at the same instant) does not move the failure
    onto the replacement. -#}
with shipped as (

    select serial_number from {{ ref('stg_mes__units') }} where status = 'shipped'

),

in_service as (

    select c.part_number, c.revision, count(distinct c.serial_number) as units_in_service
    from {{ ref('unit_configuration') }} c
    semi join shipped using (serial_number)
    group by c.part_number, c.revision

),

failures as (

    select event_id, serial_number, failed_part_number as part_number, occurred_at
    from {{ ref('stg_service__service_events') }}
    where event_type = 'failure' and failed_part_number is not null

),

held_before as (

    -- Changes ordered as the configuration applies them: time, MES before service, event_id.
    select f.event_id, c.revision
    from failures f
    join {{ ref('int_configuration_changes_resolved') }} c
      on c.serial_number = f.serial_number
     and c.part_number = f.part_number
     and c.delta <> 0
     and (
            c.changed_at < f.occurred_at
            or (c.changed_at = f.occurred_at and (c.changed_by = 'mes' or c.changed_by < f.event_id))
         )
    group by f.event_id, c.revision
    having sum(c.delta) > 1e-9

),

attributed as (

    select f.event_id, f.part_number, h.revision
    from failures f
    left join held_before h using (event_id)

),

failure_counts as (

    select part_number, revision, count(*) as failures
    from attributed
    group by part_number, revision

),

joined as (

    select
        coalesce(s.part_number, f.part_number) as part_number,
        coalesce(s.revision, f.revision) as revision,
        coalesce(s.units_in_service, 0) as units_in_service,
        coalesce(f.failures, 0) as failures
    from in_service s
    full outer join failure_counts f
      on f.part_number = s.part_number and f.revision is not distinct from s.revision

)

select
    part_number,
    revision,
    units_in_service,
    failures,
    case when units_in_service > 0 then cast(failures as double) * 100 / units_in_service end as failures_per_100_units
from joined
