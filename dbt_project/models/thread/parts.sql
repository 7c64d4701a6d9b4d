with parts as (

    select * from {{ ref('stg_plm__parts') }}

),

latest_released as (

    select part_number, revision as latest_released_revision
    from {{ ref('stg_plm__part_revisions') }}
    where released_at is not null and state not in ('in_work', 'cancelled')
    qualify row_number() over (partition by part_number order by released_at desc, revision desc) = 1

)

select
    p.part_number,
    p.name,
    p.part_type,
    p.make_buy,
    p.unit_of_measure,
    l.latest_released_revision,
    p.created_at
from parts p
left join latest_released l using (part_number)
