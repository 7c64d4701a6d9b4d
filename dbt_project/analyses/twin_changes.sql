-- twin-changes: every state the unit's twin was published in, oldest first: when, what changed
-- (compared with the state before) and why it was recomputed. Parameters: $serial, $since (null:
-- from the first).
select
    valid_from,
    valid_to,
    changes,
    refresh_reasons,
    status,
    configuration_hash,
    component_count,
    deviation_count,
    pending_retrofits,
    open_service_events,
    last_telemetry_at,
    health_state,
    worst_sensor,
    rul_hours,
    is_stale,
    stale_reason
from twin.unit_twin_history
where serial_number = $serial
  and (cast($since as timestamptz) is null or valid_from >= $since)
order by valid_from
