-- The suspect units still in service that still carry the suspect installation: whom to notify,
-- with their pending retrofits of ECOs that change this part. Reads the section before
-- (suspects). Parameters: $part.
with pending as (

    select i.serial_number, string_agg(distinct i.eco_number, ', ' order by i.eco_number) as pending_retrofits
    from thread.eco_impact i
    join thread.eco_affected_items a using (eco_number)
    where i.impact = 'retrofit_pending' and a.part_number = $part
      and i.serial_number in (select serial_number from suspects)
    group by 1

)

select
    s.serial_number,
    u.product_part_number,
    u.site,
    u.customer_id,
    s.revision,
    s.lot,
    s.installed_at,
    s.failures,
    p.pending_retrofits
from suspects s
join thread.units u using (serial_number)
left join pending p using (serial_number)
where u.status = 'shipped' and s.carries_now
order by p.pending_retrofits nulls last, s.serial_number
