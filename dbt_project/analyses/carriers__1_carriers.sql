-- Every unit that carries a lot or serial number now or carried it before, oldest installation
-- first. Parameters: $lot.
select
    g.component_serial,
    g.serial_number,
    u.product_part_number,
    u.status,
    u.site,
    g.part_number,
    g.revision,
    g.quantity,
    g.quantity_held,
    g.installed_at,
    g.installed_by,
    g.removed_at,
    g.removed_by,
    g.quantity_held > 0 as carries_now
from thread.unit_component_serials g
join thread.units u using (serial_number)
where g.component_serial = $lot
order by g.installed_at, g.serial_number
