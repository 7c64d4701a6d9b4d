with source as (

    select * from {{ source('mes', 'units') }}

),

renamed as (

    select
        serial_number,
        product_part_number,
        product_revision,
        work_order_number,
        line_id,
        build_started_at,
        build_completed_at,
        status,
        shipped_at,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
