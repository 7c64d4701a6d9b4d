with source as (

    select * from {{ source('service', 'service_bulletins') }}

),

renamed as (

    select
        bulletin_number,
        eco_number,
        title,
        issued_at,
        action,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
