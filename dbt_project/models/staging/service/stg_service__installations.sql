with source as (

    select * from {{ source('service', 'installations') }}

),

renamed as (

    select
        serial_number,
        customer_id,
        site,
        installed_at,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
