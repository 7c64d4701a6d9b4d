{#- Personal data leaves the boundary only as salted hashes. The salt is a deployment secret read
    from the build database (written there by the orchestration from THREAD_PII_SALT), so it never
    appears in compiled SQL, logs or the published warehouse. -#}
with customers as (

    select * from {{ ref('stg_service__customers') }}

),

salt as (

    select value as pii_salt from {{ ref('stg_audit__settings') }} where key = 'pii_salt'

)

select
    c.customer_id,
    c.country,
    left(sha256(s.pii_salt || '|name|' || c.name), 16) as name_masked,
    left(sha256(s.pii_salt || '|email|' || lower(trim(c.email))), 16) as email_masked
from customers c
cross join salt s
