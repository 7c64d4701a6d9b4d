with source as (

    select * from {{ source('erp', 'item_master') }}

),

renamed as (

    select
        part_number,
        current_revision,
        standard_cost,
        lead_time_days,
        updated_at,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
