select
    serial_number,
    part_number,
    revision,
    quantity,
    valid_from,
    valid_to,
    changed_by
from {{ ref('unit_configuration_history') }}
where valid_to is null
