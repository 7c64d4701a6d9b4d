{#-
    Per day of telemetry, a digest of everything `fleet_health_daily` computes that day's rows
    from: the day's readings of units that are not scrapped, with each unit's product and the
    design limits of the sensor read. A day whose digest differs from the one its rows were built
    from (`main.fleet_health_days_built`) is rebuilt: a new day of readings rebuilds that day, a
    scrapped unit the days it reported, a changed limit the days its sensor was read on units of
    that product; a new unit, nothing until it reports. DuckDB only: on Spark every build is whole.
-#}
{{ config(enabled=(target.type != 'spark')) }}

select
    cast(t.ts as date) as day,
    md5(count(*) || ':' || sum(hash(t.serial_number, t.ts, t.sensor, t.value, u.product_part_number,
                                    l.warning_high, l.critical_high)::hugeint)) as digest
from {{ ref('stg_service__telemetry') }} t
join {{ ref('stg_mes__units') }} u on u.serial_number = t.serial_number and u.status <> 'scrapped'
left join {{ ref('stg_plm__sensor_limits') }} l on l.product_part_number = u.product_part_number and l.sensor = t.sensor
group by 1
