with source as (

    select * from {{ source('plm', 'bom_lines') }}

),

renamed as (

    select
        parent_part_number,
        parent_revision,
        find_number,
        child_part_number,
        quantity,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
