-- trace: service history. Parameters: $serial.
select event_id, event_type, occurred_at, closed_at, failed_part_number, symptom_code,
       removed_part_number || coalesce('@' || removed_revision, '') as removed,
       installed_part_number || coalesce('@' || installed_revision, '') as installed,
       eco_number
from thread.service_events
where serial_number = $serial
order by occurred_at, event_id
