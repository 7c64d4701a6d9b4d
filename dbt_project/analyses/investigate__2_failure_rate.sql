-- Failures of the part per 100 units: the suspect units (their failures while the suspect
-- installation was in) against every other unit that held the same revision(s) (their failures
-- while holding it). Reads the section before (suspects). Parameters: $part.
with holders as (

    select serial_number, revision, valid_from, valid_to
    from thread.unit_configuration_history
    where part_number = $part and revision in (select revision from suspects)
      and serial_number not in (select serial_number from suspects)

),

rest as (

    select
        count(distinct h.serial_number) as units,
        count(distinct e.event_id) as failures
    from holders h
    left join thread.service_events e
      on e.serial_number = h.serial_number
     and e.event_type = 'failure'
     and e.failed_part_number = $part
     and e.occurred_at >= h.valid_from
     and e.occurred_at <= coalesce(h.valid_to, 'infinity')

),

compared as (

    select 'suspect' as population, count(distinct serial_number) as units,
           coalesce(sum(failures), 0) as failures, 1 as sort
    from suspects
    union all
    select 'rest of the revision', units, failures, 2 from rest

)

select
    population,
    units,
    failures,
    case when units > 0 then round(100.0 * failures / units, 2) end as failures_per_100_units
from compared
order by sort
