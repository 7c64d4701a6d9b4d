with source as (

    select * from {{ source('erp', 'work_orders') }}

),

renamed as (

    select
        work_order_number,
        product_part_number,
        product_revision,
        quantity,
        plant,
        status,
        created_at,
        due_date,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
