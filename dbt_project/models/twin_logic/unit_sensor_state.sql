{#- Latest reading per unit and sensor against the product's design limits, with the 24 hours
    up to it ([last_ts - 24 h, last_ts], inclusive).
    No CTE of the twin views is read twice: DuckDB materializes such a CTE, and does not keep a
    view's `not materialized` once the database is written (duckdb/duckdb#19420), so the twin
    step's serial range would stop at the CTE and every chunk would read the whole fleet's
    telemetry. The telemetry view is named twice instead; a view is always inlined. -#}
with latest as (

    select serial_number, sensor, max(ts) as last_ts, max_by(value, ts) as last_value
    from {{ ref('stg_service__telemetry') }}
    group by serial_number, sensor

),

per_sensor as (

    -- Rounded: a parallel sum adds in varying order, and a twin's input hash must not change
    -- with the last bit of a float (its twin would look changed when nothing changed).
    select l.serial_number, l.sensor, l.last_value, l.last_ts,
           round(avg(r.value), 9) as mean_24h, max(r.value) as max_24h
    from latest l
    join {{ ref('stg_service__telemetry') }} r using (serial_number, sensor)
    where r.ts >= l.last_ts - interval 24 hours and r.ts <= l.last_ts
    group by l.serial_number, l.sensor, l.last_value, l.last_ts

)

select
    s.serial_number,
    s.sensor,
    s.last_value,
    s.last_ts,
    s.mean_24h,
    s.max_24h,
    lim.warning_high,
    lim.critical_high,
    case
        when lim.warning_high is null or lim.critical_high is null then 'unknown'
        when s.last_value > lim.critical_high then 'critical'
        when s.last_value > lim.warning_high then 'warning'
        else 'ok'
    end as state
from per_sensor s
join {{ ref('stg_mes__units') }} u on u.serial_number = s.serial_number and u.status <> 'scrapped'
left join {{ ref('stg_plm__sensor_limits') }} lim
  on lim.product_part_number = u.product_part_number and lim.sensor = s.sensor
