{#- Failures per part revision, each failure attributed to the revision(s) the unit held when it
    happened. -#}
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

attributed as (

    select f.event_id, f.part_number, h.revision
    from failures f
    left join {{ ref('unit_configuration_history') }} h
      on h.serial_number = f.serial_number
     and h.part_number = f.part_number
     and h.valid_from <= f.occurred_at
     and (h.valid_to is null or f.occurred_at < h.valid_to)

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
    case when units_in_service > 0 then failures * 100.0 / units_in_service end as failures_per_100_units
from joined
