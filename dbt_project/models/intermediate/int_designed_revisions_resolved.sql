{#- The designed revision of every part for every effectivity class: the effective revision with
    the latest released_at (ties: the later revision in string order). -#}
with classes as (

    select
        class_id,
        min(serial_number) as serial_number,
        any_value(effectivity_date) as effectivity_date,
        any_value(serial_prefix) as serial_prefix,
        any_value(product_part_number) as product_part_number
    from {{ ref('int_units_classified') }}
    group by class_id

),

revisions as (

    select * from {{ ref('int_revisions_released') }}

),

effective as (

    select c.class_id, r.part_number, r.revision, r.released_at
    from classes c
    join revisions r
      on (r.eco_number is null and cast(r.released_at as date) <= c.effectivity_date)
      or (r.effectivity_type = 'date' and c.effectivity_date >= r.effective_date)
      or (
            r.effectivity_type = 'serial'
            and c.serial_prefix = r.effective_serial_prefix
            and c.serial_number >= r.effective_from
         )

)

select class_id, part_number, revision, released_at
from effective
qualify row_number() over (
    partition by class_id, part_number order by released_at desc, revision desc
) = 1
