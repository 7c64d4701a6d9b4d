-- Field reliability per part revision, worst first. Parameters: $part (null = every part).
select r.part_number, p.name, r.revision, r.units_in_service, r.failures,
       round(r.failures_per_100_units, 2) as failures_per_100_units
from thread.part_field_reliability r
left join thread.parts p using (part_number)
where cast($part as varchar) is null or r.part_number = $part
order by r.failures_per_100_units desc nulls last, r.failures desc, r.part_number, r.revision
