with source as (

    select * from {{ source('service', 'customers') }}

),

renamed as (

    select
        customer_id,
        name,
        email,
        country,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
