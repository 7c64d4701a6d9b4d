{#- Service history per unit. The free-text notes stay in the raw layer: they can hold personal data. -#}
select
    event_id,
    serial_number,
    event_type,
    occurred_at,
    closed_at,
    failed_part_number,
    symptom_code,
    removed_part_number,
    removed_revision,
    installed_part_number,
    installed_revision,
    eco_number
from {{ ref('stg_service__service_events') }}
