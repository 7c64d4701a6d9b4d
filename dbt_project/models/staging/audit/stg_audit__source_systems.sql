with source as (

    select * from {{ source('audit', 'source_systems') }}

),

renamed as (

    select
        system,
        title,
        owner_team,
        contract_version,
        freshness_limit_hours
    from source

)

select * from renamed
