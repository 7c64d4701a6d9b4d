with source as (

    select * from {{ source('plm', 'eco_affected_items') }}

),

renamed as (

    select
        eco_number,
        part_number,
        from_revision,
        to_revision,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
