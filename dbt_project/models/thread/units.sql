with units as (

    select * from {{ ref('stg_mes__units') }}

),

installations as (

    select * from {{ ref('stg_service__installations') }}

)

select
    u.serial_number,
    u.product_part_number,
    u.product_revision,
    u.status,
    u.build_started_at,
    u.build_completed_at,
    u.shipped_at,
    u.work_order_number,
    i.customer_id,
    i.site,
    u.line_id,
    i.installed_at
from units u
left join installations i using (serial_number)
