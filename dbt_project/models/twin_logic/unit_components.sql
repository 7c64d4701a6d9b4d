select
    c.serial_number,
    c.part_number,
    c.revision,
    c.quantity,
    c.valid_from as since
from {{ ref('unit_configuration') }} c
semi join (
    select serial_number from {{ ref('stg_mes__units') }} where status <> 'scrapped'
) using (serial_number)
