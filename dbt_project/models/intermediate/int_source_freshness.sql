{#- Per source system: its last successful extraction and whether that is within the freshness
    limit its contract declares. -#}
with systems as (

    select * from {{ ref('stg_audit__source_systems') }}

),

last_ok as (

    select system, max(extracted_at) as last_success_at
    from {{ ref('stg_audit__extractions') }}
    where status = 'ok'
    group by system

)

select
    s.system,
    s.freshness_limit_hours,
    l.last_success_at,
    l.last_success_at is null
        or {{ hours_between('l.last_success_at', 'current_timestamp') }} > s.freshness_limit_hours as is_late
from systems s
left join last_ok l using (system)
