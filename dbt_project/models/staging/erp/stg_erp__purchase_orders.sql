with source as (

    select * from {{ source('erp', 'purchase_orders') }}

),

renamed as (

    select
        po_number,
        line,
        part_number,
        revision,
        supplier_id,
        quantity,
        unit_price,
        currency,
        ordered_at,
        received_at,
        status,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
