{#- Latest reading per unit and sensor against the product's design limits, with the 24 hours
    up to it ([last_ts - 24 h, last_ts], inclusive). -#}
with units as {{ inlined() }} (

    select serial_number, product_part_number
    from {{ ref('stg_mes__units') }}
    where status <> 'scrapped'

),

readings as {{ inlined() }} (

    select t.serial_number, t.sensor, t.ts, t.value
    from {{ ref('stg_service__telemetry') }} t
    semi join units using (serial_number)

),

latest as {{ inlined() }} (

    select serial_number, sensor, max(ts) as last_ts, max_by(value, ts) as last_value
    from readings
    group by serial_number, sensor

),

window_24h as {{ inlined() }} (

    -- Rounded: a parallel sum adds in varying order, and a twin's input hash must not change
    -- with the last bit of a float (its twin would look changed when nothing changed).
    select r.serial_number, r.sensor, round(avg(r.value), 9) as mean_24h, max(r.value) as max_24h
    from readings r
    join latest l using (serial_number, sensor)
    where r.ts >= l.last_ts - interval 24 hours and r.ts <= l.last_ts
    group by r.serial_number, r.sensor

)

select
    l.serial_number,
    l.sensor,
    l.last_value,
    l.last_ts,
    w.mean_24h,
    w.max_24h,
    lim.warning_high,
    lim.critical_high,
    case
        when lim.warning_high is null or lim.critical_high is null then 'unknown'
        when l.last_value > lim.critical_high then 'critical'
        when l.last_value > lim.warning_high then 'warning'
        else 'ok'
    end as state
from latest l
join window_24h w using (serial_number, sensor)
join units u using (serial_number)
left join {{ ref('stg_plm__sensor_limits') }} lim
  on lim.product_part_number = u.product_part_number and lim.sensor = l.sensor
