{#- How far each released ECO travelled: to the line (MES work instructions), to planning (ERP
    change log) and to the field (service bulletins). -#}
with ecos as (

    select eco_number, released_at from {{ ref('stg_plm__ecos') }} where state = 'released'

),

items as (

    select distinct i.eco_number, i.part_number
    from {{ ref('stg_plm__eco_affected_items') }} i
    semi join ecos using (eco_number)

),

mes_per_part as (

    select eco_number, part_number, min(effective_at) as first_effective_at
    from {{ ref('stg_mes__work_instructions') }}
    where eco_number is not null
    group by eco_number, part_number

),

erp_rows as (

    select eco_number, part_number, applied_at from {{ ref('stg_erp__engineering_change_log') }}

),

per_eco as (

    select
        i.eco_number,
        count(*) as affected_parts,
        count(m.first_effective_at) as mes_parts,
        max(m.first_effective_at) as mes_latest,
        count(*) filter (where exists (
            select 1 from erp_rows r where r.eco_number = i.eco_number and r.part_number = i.part_number
        )) as erp_parts
    from items i
    left join mes_per_part m using (eco_number, part_number)
    group by i.eco_number

),

erp_latest as (

    select r.eco_number, max(r.applied_at) as erp_latest
    from erp_rows r
    semi join items i using (eco_number, part_number)
    group by r.eco_number

),

service as (

    select eco_number, min(issued_at) as service_notified_at
    from {{ ref('stg_service__service_bulletins') }}
    where eco_number is not null
    group by eco_number

),

adopted as (

    select
        e.eco_number,
        e.released_at,
        coalesce(p.affected_parts, 0) as affected_parts,
        case when p.affected_parts > 0 and p.mes_parts = p.affected_parts then p.mes_latest end
            as mes_adopted_at,
        case when p.affected_parts > 0 and p.erp_parts = p.affected_parts then l.erp_latest end
            as erp_adopted_at,
        s.service_notified_at
    from ecos e
    left join per_eco p using (eco_number)
    left join erp_latest l using (eco_number)
    left join service s using (eco_number)

),

missing as (

    select
        *,
        {{ list_where(list_of(
                "case when erp_adopted_at is null then 'erp' end",
                "case when mes_adopted_at is null then 'mes' end",
                "case when service_notified_at is null then 'service' end"),
            'x', 'x is not null') }} as missing_list
    from adopted

)

select
    eco_number,
    released_at,
    mes_adopted_at,
    erp_adopted_at,
    service_notified_at,
    {{ hours_between('released_at', 'mes_adopted_at') }} as mes_lag_hours,
    {{ hours_between('released_at', 'erp_adopted_at') }} as erp_lag_hours,
    {{ hours_between('released_at', 'service_notified_at') }} as service_lag_hours,
    {{ list_join('missing_list', "','") }} as missing_systems,
    case when {{ list_len('missing_list') }} = 0 then 'complete' else 'gap' end as status,
    affected_parts
from missing
