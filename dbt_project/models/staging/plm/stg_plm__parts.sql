with source as (

    select * from {{ source('plm', 'parts') }}

),

renamed as (

    select
        part_number,
        name,
        part_type,
        make_buy,
        unit_of_measure,
        created_at,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
