{#- Personal data leaves the boundary only as salted hashes. The hashes are computed by the
    orchestration with the salt (THREAD_PII_SALT) bound as a parameter, so neither the salt nor
    clear-text names and emails appear in compiled SQL, logs or the published warehouse. -#}
with customers as (

    select * from {{ ref('stg_service__customers') }}

),

masks as (

    select * from {{ ref('stg_audit__pii_masks') }}

)

select
    c.customer_id,
    c.country,
    m.name_masked,
    m.email_masked
from customers c
left join masks m on m.customer_id = c.customer_id
