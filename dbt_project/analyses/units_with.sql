-- Which units carry a part (optionally at one revision) now, and which shipped with it.
-- Parameters: $part, $revision (null = any revision).
with now as (
    select serial_number, string_agg(revision || ' x' || quantity, ', ' order by revision) as carries_now
    from thread.unit_configuration
    where part_number = $part and (cast($revision as varchar) is null or revision = $revision)
    group by serial_number
),

shipped as (
    select b.serial_number, string_agg(b.revision || ' x' || b.quantity, ', ' order by b.revision) as shipped_with
    from thread.unit_as_built b
    join thread.units u using (serial_number)
    where u.status = 'shipped' and b.part_number = $part
      and (cast($revision as varchar) is null or b.revision = $revision)
    group by b.serial_number
)

select u.serial_number, u.product_part_number, u.status, u.site, n.carries_now, s.shipped_with
from thread.units u
left join now n using (serial_number)
left join shipped s using (serial_number)
where n.serial_number is not null or s.serial_number is not null
order by u.serial_number
