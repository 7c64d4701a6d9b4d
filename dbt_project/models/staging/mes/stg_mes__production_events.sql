with source as (

    select * from {{ source('mes', 'production_events') }}

),

renamed as (

    select
        event_id,
        serial_number,
        station,
        operation,
        event_type,
        occurred_at,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
