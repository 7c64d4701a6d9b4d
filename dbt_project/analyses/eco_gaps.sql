-- Released changes that have not reached MES, ERP or Service, oldest first.
with impact as (
    select
        eco_number,
        count(*) filter (where impact = 'retrofit_pending') as units_pending_retrofit,
        count(*) filter (where impact = 'effective_not_built') as units_built_without_it
    from thread.eco_impact
    where eco_number in (select eco_number from thread.eco_propagation where status = 'gap')
    group by eco_number
)

select
    p.eco_number,
    p.released_at,
    round(epoch(current_timestamp - p.released_at) / 86400, 1) as days_since_release,
    p.missing_systems,
    p.affected_parts,
    coalesce(i.units_pending_retrofit, 0) as units_pending_retrofit,
    coalesce(i.units_built_without_it, 0) as units_built_without_it
from thread.eco_propagation p
left join impact i using (eco_number)
where p.status = 'gap'
order by p.released_at, p.eco_number
