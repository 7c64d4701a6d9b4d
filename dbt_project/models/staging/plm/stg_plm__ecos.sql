with source as (

    select * from {{ source('plm', 'ecos') }}

),

renamed as (

    select
        eco_number,
        title,
        reason,
        state,
        created_at,
        released_at,
        effectivity_type,
        effective_from,
        field_action,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
