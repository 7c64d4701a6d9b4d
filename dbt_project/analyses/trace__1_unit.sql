-- trace: the unit, where it is and how it is doing. Parameters: $serial.
select u.serial_number, u.product_part_number, u.product_revision, u.status, u.line_id, u.work_order_number,
       u.build_started_at, u.build_completed_at, u.shipped_at, u.customer_id, u.site,
       t.health_state, t.worst_sensor, t.pending_retrofits, t.open_service_events, t.configuration_hash,
       t.refreshed_at, t.is_stale
from thread.units u
left join twin.unit_twin t using (serial_number)
where u.serial_number = $serial
