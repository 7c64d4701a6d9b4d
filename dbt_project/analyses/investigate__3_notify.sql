-- The suspect units still in service that still carry the suspect installation: whom to notify,
-- with their pending retrofits of ECOs that change this part. Reads the section before
-- (suspects). Parameters: $part.
select
    s.serial_number,
    u.product_part_number,
    u.site,
    u.customer_id,
    s.revision,
    s.lot,
    s.installed_at,
    s.failures,
    (select string_agg(distinct i.eco_number, ', ' order by i.eco_number)
     from thread.eco_impact i
     join thread.eco_affected_items a using (eco_number)
     where i.serial_number = s.serial_number and i.impact = 'retrofit_pending' and a.part_number = $part
    ) as pending_retrofits
from suspects s
join thread.units u using (serial_number)
where u.status = 'shipped' and s.carries_now
order by pending_retrofits nulls last, s.serial_number
