with source as (

    select * from {{ source('audit', 'settings') }}

)

select key, value from source
