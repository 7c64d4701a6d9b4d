with source as (

    select * from {{ source('service', 'service_events') }}

),

renamed as (

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
        installed_component_serial,
        eco_number,
        notes,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
