with source as (

    select * from {{ source('audit', 'contract_findings') }}

),

renamed as (

    select
        batch_id,
        extracted_at,
        system,
        entity,
        mode,
        source,
        source_row,
        record_key,
        "column" as column_name,
        rule,
        reason,
        severity,
        is_rejected,
        record
    from source

)

select * from renamed
