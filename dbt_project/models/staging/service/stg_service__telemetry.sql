with source as (

    select * from {{ source('service', 'telemetry') }}

),

renamed as (

    select
        serial_number,
        ts,
        sensor,
        value,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
