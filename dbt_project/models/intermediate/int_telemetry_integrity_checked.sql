{#- The integrity rules on the telemetry, the largest export (57 million readings at 100,000
    units), in a table of their own that contract_violations reads: a change that does not
    reach the readings, the units or the sensor limits (an ECO) leaves them as they were built,
    instead of scanning every reading again (3.6 s at 100,000 units). -#}
with unknown_telemetry_serial as (

    select 'service' as system, 'telemetry' as entity, 'telemetry names a known serial' as rule,
           t.serial_number as record_key,
           count(*) || ' readings from ' || t.serial_number || ', which MES does not know' as detail,
           'error' as severity
    from {{ ref('stg_service__telemetry') }} t
    anti join {{ ref('stg_mes__units') }} u using (serial_number)
    group by t.serial_number

),

sensor_without_limits as (

    select 'service', 'telemetry', 'telemetry sensor has design limits',
           u.product_part_number || '/' || t.sensor,
           'sensor ' || t.sensor || ' reports for ' || count(distinct t.serial_number) || ' units of '
               || u.product_part_number || ', but PLM has no limits for it', 'warning'
    from {{ ref('stg_service__telemetry') }} t
    join {{ ref('stg_mes__units') }} u using (serial_number)
    anti join {{ ref('stg_plm__sensor_limits') }} l
      on l.product_part_number = u.product_part_number and l.sensor = t.sensor
    group by u.product_part_number, t.sensor

)

select * from unknown_telemetry_serial
union all
select * from sensor_without_limits
