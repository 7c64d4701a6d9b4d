with source as (

    select * from {{ source('service', 'warranty_claims') }}

),

renamed as (

    select
        claim_id,
        serial_number,
        event_id,
        claimed_at,
        amount,
        currency,
        status,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
