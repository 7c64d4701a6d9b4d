{#- Fleet health over time: per day, how many units reached each state (the worst state any of
    their limited sensors reached that day, from the day's peak reading). Stored by day: a new day
    of readings rebuilds that day only (macros/days.sql). -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          pre_hook="{{ delete_fleet_health_days() }}", post_hook="{{ keep_fleet_health_days_built() }}") }}
with units as (

    select serial_number, product_part_number from {{ ref('stg_mes__units') }} where status <> 'scrapped'

),

{#- A unit's worst state of the day straight from its readings: a state is monotone in the reading,
    so the worst reading's state is the state of the day's peak; grouping readings by unit and day
    (not by unit, day and sensor first, as many groups as readings) halved the model at L. -#}
unit_days as (

    select
        t.serial_number,
        cast(t.ts as date) as day,
        max(case when t.value > l.critical_high then 3 when t.value > l.warning_high then 2 else 1 end) as worst
    from {{ ref('stg_service__telemetry') }} t
    join units u using (serial_number)
    join {{ ref('stg_plm__sensor_limits') }} l
      on l.product_part_number = u.product_part_number and l.sensor = t.sensor
    where {{ in_fleet_health_days('t.ts') }}
    group by t.serial_number, cast(t.ts as date)

)

select
    day,
    case worst when 3 then 'critical' when 2 then 'warning' else 'ok' end as health_state,
    count(*) as units
from unit_days
group by day, worst
