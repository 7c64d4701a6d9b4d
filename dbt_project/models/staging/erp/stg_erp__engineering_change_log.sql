with source as (

    select * from {{ source('erp', 'engineering_change_log') }}

),

renamed as (

    select
        eco_number,
        part_number,
        new_revision,
        applied_at,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
