-- eco-impact: the units it touches, by impact. Parameters: $eco.
select impact, count(*) as units, string_agg(serial_number, ', ' order by serial_number) as serials
from thread.eco_impact
where eco_number = $eco
group by impact
order by impact
