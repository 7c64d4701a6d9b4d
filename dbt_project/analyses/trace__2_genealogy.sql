-- trace: as designed vs as built vs now, per part. Parameters: $serial.
with designed as (
    select part_number, string_agg(coalesce(revision, '(none)'), ',' order by revision) as designed, sum(quantity) as designed_qty
    from thread.unit_as_designed where serial_number = $serial group by part_number
),
built as (
    select part_number, string_agg(revision, ',' order by revision) as built, sum(quantity) as built_qty,
           bool_or(is_substitute) as substitute
    from thread.unit_as_built where serial_number = $serial group by part_number
),
now as (
    select part_number, string_agg(revision, ',' order by revision) as now, sum(quantity) as now_qty,
           max(valid_from) as since
    from thread.unit_configuration where serial_number = $serial group by part_number
)
select coalesce(d.part_number, b.part_number, n.part_number) as part_number, p.name,
       d.designed, d.designed_qty, b.built, b.built_qty, n.now, n.now_qty, n.since,
       coalesce(b.substitute, false) as substitute,
       case when d.designed is distinct from b.built or d.designed_qty is distinct from b.built_qty then 'deviation'
            when b.built is distinct from n.now or b.built_qty is distinct from n.now_qty then 'changed in the field'
            else '' end as note
from designed d
full outer join built b using (part_number)
full outer join now n using (part_number)
left join thread.parts p on p.part_number = coalesce(d.part_number, b.part_number, n.part_number)
order by note desc, part_number
