-- Released changes that have not reached MES, ERP or Service, oldest first.
select
    p.eco_number,
    p.released_at,
    round(epoch(current_timestamp - p.released_at) / 86400, 1) as days_since_release,
    p.missing_systems,
    p.affected_parts,
    count(i.serial_number) filter (where i.impact = 'retrofit_pending') as units_pending_retrofit,
    count(i.serial_number) filter (where i.impact = 'effective_not_built') as units_built_without_it
from thread.eco_propagation p
left join thread.eco_impact i using (eco_number)
where p.status = 'gap'
group by all
order by p.released_at, p.eco_number
