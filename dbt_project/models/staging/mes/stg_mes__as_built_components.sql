with source as (

    select * from {{ source('mes', 'as_built_components') }}

),

renamed as (

    select
        serial_number,
        part_number,
        revision,
        quantity,
        component_serial,
        installed_at,
        is_substitute = 1 as is_substitute,
        _batch_id as batch_id,
        _extracted_at as extracted_at
    from source

)

select * from renamed
