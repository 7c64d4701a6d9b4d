with units as (

    select serial_number, class_id from {{ ref('int_units_classified') }}

),

structures as (

    select * from {{ ref('int_structures_exploded') }} where not is_cycle

)

select
    u.serial_number,
    s.part_number,
    s.revision,
    s.quantity
from units u
join structures s using (class_id)
