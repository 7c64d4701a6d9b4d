with source as (

    select * from {{ source('mes', 'quality_records') }}

),

renamed as (

    select
        record_id,
        serial_number,
        characteristic,
        measured_value,
        lower_limit,
        upper_limit,
        result,
        recorded_at,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
