{#-
    Effectivity classes. Every effectivity rule is "effectivity date >= a threshold date" or
    "same serial prefix and serial >= a threshold serial", so units that fall between the same
    thresholds get the same designed revisions. Each class is exploded once (not each unit):
    the explosion cost follows the number of engineering changes, not the fleet size.
-#}
with units as (

    select
        serial_number,
        product_part_number,
        cast(build_started_at as date) as effectivity_date,
        {{ serial_prefix('serial_number') }} as serial_prefix
    from {{ ref('stg_mes__units') }}

),

revisions as (

    select * from {{ ref('int_revisions_released') }}

),

date_thresholds as (

    select distinct threshold_date
    from (
        select cast(released_at as date) as threshold_date from revisions where eco_number is null
        union all
        select effective_date from revisions where effectivity_type = 'date'
    )
    where threshold_date is not null

),

serial_thresholds as (

    select distinct effective_serial_prefix as serial_prefix, effective_from as threshold_serial
    from revisions
    where effectivity_type = 'serial'

),

classified as (

    select
        u.*,
        (select count(*) from date_thresholds d where d.threshold_date <= u.effectivity_date) as date_step,
        (
            select count(*) from serial_thresholds s
            where s.serial_prefix = u.serial_prefix and s.threshold_serial <= u.serial_number
        ) as serial_step
    from units u

)

select
    serial_number,
    product_part_number,
    effectivity_date,
    serial_prefix,
    product_part_number || '|' || serial_prefix || '|' || date_step || '|' || serial_step as class_id
from classified
