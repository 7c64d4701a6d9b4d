-- The suspect population of a quality investigation: every installation of the part (at the
-- revision, of the lot(s)) whose installation time falls in the window, with the failures of
-- that part while it was installed. Without lots, an installation is a run of time during which
-- the unit held that revision without a break (with the lots and serials installed during it). Parameters: $part, $revision, $lot (comma-
-- separated lots or serials), $from, $to (dates, inclusive; null = open). An open interval ends at
-- 'infinity' rather than `or ... is null`: a join condition with `or` is a nested loop in DuckDB.
with periods as (

    select
        serial_number, revision, valid_from, valid_to,
        case when lag(valid_to) over w = valid_from then 0 else 1 end as starts_run
    from thread.unit_configuration_history
    where part_number = $part and (cast($revision as varchar) is null or revision = $revision)
    window w as (partition by serial_number, revision order by valid_from)

),

runs as (

    select *, sum(starts_run) over (partition by serial_number, revision order by valid_from) as run
    from periods

),

held as (

    select
        serial_number, revision, min(valid_from) as installed_at,
        case when bool_or(valid_to is null) then null else max(valid_to) end as removed_at
    from runs
    group by serial_number, revision, run

),

tracked as (

    select serial_number, revision, component_serial, installed_at, removed_at
    from thread.unit_component_serials
    where part_number = $part and (cast($revision as varchar) is null or revision = $revision)

),

-- the lots and serials installed during each run, when the part is tracked
held_lots as (

    select
        h.serial_number, h.revision,
        -- a list aggregate: string_agg(distinct ... order by) costs several times as much in DuckDB
        nullif(array_to_string(list_sort(list_distinct(list(g.component_serial))), ','), '') as lot,
        h.installed_at, h.removed_at
    from held h
    left join tracked g
      on g.serial_number = h.serial_number
     and g.revision = h.revision
     and g.installed_at >= h.installed_at
     and g.installed_at < coalesce(h.removed_at, 'infinity')
    group by all

),

lots as (

    select serial_number, revision, component_serial as lot, installed_at, removed_at
    from tracked
    where component_serial in (select trim(unnest(string_split(cast($lot as varchar), ','))))

),

installs as (

    select * from lots where cast($lot as varchar) is not null
    union all
    select * from held_lots where cast($lot as varchar) is null

),

suspects as (

    select * from installs
    where (cast($from as date) is null or installed_at >= cast($from as date))
      and (cast($to as date) is null or installed_at < cast($to as date) + interval 1 day)

),

part_failures as (

    select serial_number, event_id, occurred_at
    from thread.service_events
    where event_type = 'failure' and failed_part_number = $part

),

failures as (

    select s.serial_number, s.revision, s.lot, s.installed_at, s.removed_at, count(e.event_id) as failures
    from suspects s
    left join part_failures e
      on e.serial_number = s.serial_number
     and e.occurred_at >= s.installed_at
     and e.occurred_at <= coalesce(s.removed_at, 'infinity')
    group by all

)

select
    f.serial_number,
    u.product_part_number,
    u.status,
    u.site,
    f.revision,
    f.lot,
    f.installed_at,
    f.removed_at,
    f.removed_at is null as carries_now,
    f.failures
from failures f
join thread.units u using (serial_number)
order by f.installed_at, f.serial_number
