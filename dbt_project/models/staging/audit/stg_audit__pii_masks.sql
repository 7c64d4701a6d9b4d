with source as (

    select * from {{ source('audit', 'pii_masks') }}

)

select customer_id, name_masked, email_masked from source
