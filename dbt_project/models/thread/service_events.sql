{#- Service history per unit. The free-text notes stay in the raw layer: they can hold personal data.
    A view (a projection of the staging view): every thread run rebuilds it for the estimates that
    read it, and as a table that was 5.6 s of an ECO's refresh at 100,000 units. -#}
{{ config(materialized=('table' if target.type == 'spark' else 'view')) }}
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
