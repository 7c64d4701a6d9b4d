{#- Fleet health over time: per day, how many units reached each state (the worst state any of
    their limited sensors reached that day, from the day's peak reading). Stored by day: a new day
    of readings rebuilds that day only (macros/days.sql). -#}
{{ config(materialized='incremental', incremental_strategy='append', on_schema_change='fail',
          pre_hook="{{ delete_fleet_health_days() }}", post_hook="{{ keep_fleet_health_days_built() }}") }}
with units as (

    select serial_number, product_part_number from {{ ref('stg_mes__units') }} where status <> 'scrapped'

),

peaks as (

    select t.serial_number, cast(t.ts as date) as day, t.sensor, max(t.value) as peak
    from {{ ref('stg_service__telemetry') }} t
    where {{ in_fleet_health_days('t.ts') }}
    group by t.serial_number, cast(t.ts as date), t.sensor

),

unit_days as (

    select
        p.serial_number,
        p.day,
        max(case when p.peak > l.critical_high then 3 when p.peak > l.warning_high then 2 else 1 end) as worst
    from peaks p
    join units u using (serial_number)
    join {{ ref('stg_plm__sensor_limits') }} l
      on l.product_part_number = u.product_part_number and l.sensor = p.sensor
    group by p.serial_number, p.day

)

select
    day,
    case worst when 3 then 'critical' when 2 then 'warning' else 'ok' end as health_state,
    count(*) as units
from unit_days
group by day, worst
