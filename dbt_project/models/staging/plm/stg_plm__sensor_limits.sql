with source as (

    select * from {{ source('plm', 'sensor_limits') }}

),

renamed as (

    select
        product_part_number,
        sensor,
        unit,
        warning_high,
        critical_high,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
