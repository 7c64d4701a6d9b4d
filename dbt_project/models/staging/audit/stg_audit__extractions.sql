with source as (

    select * from {{ source('audit', 'extractions') }}

),

renamed as (

    select
        batch_id,
        system,
        entity,
        extracted_at,
        status,
        input_rows,
        accepted_rows,
        quarantined_rows,
        is_changed
    from source

)

select * from renamed
