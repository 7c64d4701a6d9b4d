-- trace: the engineering changes that touch the unit. Parameters: $serial.
select i.eco_number, i.impact, p.released_at, p.status as propagation, p.missing_systems
from thread.eco_impact i
join thread.eco_propagation p using (eco_number)
where i.serial_number = $serial
order by p.released_at
