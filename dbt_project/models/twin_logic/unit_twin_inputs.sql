{#- What each twin is computed from, hashed per aspect. A twin needs a refresh exactly when one of
    these differs from the hash stored with it at its last refresh; the aspect names the reason.
    The twin layer adds the estimate's aspect (rul_hash) and all of them together (input_hash,
    twins.input_hash): a day of telemetry recombines the stored hashes with new telemetry ones. -#}
with twin as (

    select * from {{ ref('unit_twin') }}

),

components as (

    select serial_number, {{ rows_hash(['part_number', 'revision', 'quantity', 'since']) }} as h
    from {{ ref('unit_components') }}
    group by serial_number

),

sensors as (

    select serial_number,
           {{ rows_hash(['sensor', 'last_value', 'last_ts', 'mean_24h', 'max_24h', 'state']) }} as h
    from {{ ref('unit_sensor_state') }}
    group by serial_number

)

select
    t.serial_number,
    md5(concat_ws('|', t.product_part_number, t.product_revision, t.status, {{ hash_text('t.shipped_at', 'timestamp') }}, t.site)) as unit_hash,
    md5(concat_ws('|', t.configuration_hash, {{ hash_text('t.component_count') }}, c.h)) as configuration_hash,
    md5(concat_ws('|', {{ hash_text('t.deviation_count') }})) as deviation_hash,
    md5(concat_ws('|', {{ hash_text('t.pending_retrofits') }})) as eco_hash,
    md5(concat_ws('|', {{ hash_text('t.open_service_events') }}, {{ hash_text('t.last_service_event_at', 'timestamp') }})) as service_hash,
    md5(concat_ws('|', {{ hash_text('t.last_telemetry_at', 'timestamp') }}, t.health_state, t.worst_sensor, s.h)) as telemetry_hash
from twin t
left join components c using (serial_number)
left join sensors s using (serial_number)
