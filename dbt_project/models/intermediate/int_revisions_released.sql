{#- Revisions that can be effective at all: released (a released_at, not in work or cancelled),
    and either an initial release (no ECO) or released by an ECO that is itself released. -#}
with revisions as (

    select * from {{ ref('stg_plm__part_revisions') }}

),

ecos as (

    select * from {{ ref('stg_plm__ecos') }}

)

select
    r.part_number,
    r.revision,
    r.released_at,
    r.eco_number,
    e.effectivity_type,
    e.effective_from,
    case when e.effectivity_type = 'date' then try_cast(e.effective_from as date) end as effective_date,
    case when e.effectivity_type = 'serial' then {{ serial_prefix('e.effective_from') }} end
        as effective_serial_prefix
from revisions r
left join ecos e on e.eco_number = r.eco_number
where r.released_at is not null
  and r.state not in ('in_work', 'cancelled')
  and (r.eco_number is null or e.state = 'released')
