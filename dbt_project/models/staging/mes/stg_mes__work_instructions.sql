with source as (

    select * from {{ source('mes', 'work_instructions') }}

),

renamed as (

    select
        instruction_id,
        product_part_number,
        operation,
        part_number,
        revision,
        eco_number,
        effective_at,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
