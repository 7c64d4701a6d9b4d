with source as (

    select * from {{ source('plm', 'part_revisions') }}

),

renamed as (

    select
        part_number,
        revision,
        state,
        released_at,
        eco_number,
        description,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
