{#- What each twin is computed from, hashed per aspect. A twin needs a refresh exactly when one of
    these differs from the hash stored with it at its last refresh; the aspect names the reason. -#}
with twin as not materialized (

    select * from {{ ref('unit_twin') }}

),

components as not materialized (

    select serial_number,
           md5(string_agg(part_number || '@' || coalesce(revision, '?') || 'x' || quantity::varchar || '@' || since::varchar,
                          ';' order by part_number, revision)) as h
    from {{ ref('unit_components') }}
    group by serial_number

),

sensors as not materialized (

    select serial_number,
           md5(string_agg(sensor || '=' || last_value::varchar || '@' || last_ts::varchar || '/' || mean_24h::varchar
                          || '/' || max_24h::varchar || '/' || state, ';' order by sensor)) as h
    from {{ ref('unit_sensor_state') }}
    group by serial_number

),

aspects as not materialized (

    select
        t.serial_number,
        md5(concat_ws('|', t.product_part_number, t.product_revision, t.status, t.shipped_at::varchar, t.site)) as unit_hash,
        md5(concat_ws('|', t.configuration_hash, t.component_count, c.h)) as configuration_hash,
        md5(concat_ws('|', t.deviation_count)) as deviation_hash,
        md5(concat_ws('|', t.pending_retrofits)) as eco_hash,
        md5(concat_ws('|', t.open_service_events, t.last_service_event_at::varchar)) as service_hash,
        md5(concat_ws('|', t.last_telemetry_at::varchar, t.health_state, t.worst_sensor, s.h)) as telemetry_hash
    from twin t
    left join components c using (serial_number)
    left join sensors s using (serial_number)

)

select
    *,
    md5(concat_ws('|', unit_hash, configuration_hash, deviation_hash, eco_hash, service_hash, telemetry_hash)) as input_hash
from aspects
