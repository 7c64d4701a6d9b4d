with components as (

    select serial_number, part_number, revision, quantity, is_substitute
    from {{ ref('stg_mes__as_built_components') }}

),

products as (

    select serial_number, product_part_number as part_number, product_revision as revision,
           1.0::double as quantity, false as is_substitute
    from {{ ref('stg_mes__units') }}

)

select
    serial_number,
    part_number,
    revision,
    sum(quantity) as quantity,
    bool_or(is_substitute) as is_substitute
from (select * from components union all select * from products)
group by serial_number, part_number, revision
