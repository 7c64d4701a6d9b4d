{#- One live model per unit that is not scrapped. refreshed_at and is_stale are added by the twin
    assets and the publish step: they are about when a twin was computed, not what it says.
    No CTE is read twice (see unit_sensor_state: the twin step's serial range must reach every scan). -#}
with configuration as (

    select
        c.serial_number,
        md5({{ ordered_string_agg(
            "c.part_number || '@' || coalesce(c.revision, '?') || 'x' || " ~ hash_text('c.quantity', 'double'),
            "';'", 'c.part_number, c.revision') }}) as configuration_hash,
        count(*) filter (where c.part_number <> u.product_part_number) as component_count
    from {{ ref('unit_configuration') }} c
    join {{ ref('units') }} u using (serial_number)
    group by c.serial_number

),

deviations as (

    select serial_number, count(*) as deviation_count from {{ ref('unit_deviations') }} group by serial_number

),

retrofits as (

    select serial_number, count(*) as pending_retrofits
    from {{ ref('eco_impact') }}
    where impact = 'retrofit_pending'
    group by serial_number

),

service as (

    select
        serial_number,
        count(*) filter (where closed_at is null) as open_service_events,
        max(occurred_at) as last_service_event_at
    from {{ ref('stg_service__service_events') }}
    group by serial_number

),

sensors as (

    select
        *,
        case state when 'critical' then 3 when 'warning' then 2 when 'ok' then 1 else 0 end as severity_rank
    from {{ ref('unit_sensor_state') }}

),

health as (

    select
        serial_number,
        max(last_ts) as last_telemetry_at,
        max(severity_rank) as worst_rank,
        max_by(sensor, {{ list_of('cast(severity_rank as double)', 'coalesce(last_value / nullif(warning_high, 0), 0)') }})
            filter (where severity_rank > 0) as worst_sensor
    from sensors
    group by serial_number

)

select
    u.serial_number,
    u.product_part_number,
    u.product_revision,
    u.status,
    u.shipped_at,
    u.site,
    c.configuration_hash,
    coalesce(c.component_count, 0) as component_count,
    coalesce(d.deviation_count, 0) as deviation_count,
    coalesce(r.pending_retrofits, 0) as pending_retrofits,
    coalesce(s.open_service_events, 0) as open_service_events,
    s.last_service_event_at,
    h.last_telemetry_at,
    case coalesce(h.worst_rank, 0) when 3 then 'critical' when 2 then 'warning' when 1 then 'ok' else 'unknown' end
        as health_state,
    h.worst_sensor
from {{ ref('units') }} u
left join configuration c using (serial_number)
left join deviations d using (serial_number)
left join retrofits r using (serial_number)
left join service s using (serial_number)
left join health h using (serial_number)
where u.status <> 'scrapped'
