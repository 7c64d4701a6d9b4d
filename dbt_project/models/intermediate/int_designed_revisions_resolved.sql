{#- The designed revision of every part in each effectivity class's product structure (every part
    a BOM line of any revision places under the product, all levels): the effective revision with
    the latest released_at (ties: the later revision in string order). Parts outside the product's
    structure are left out: int_structures_exploded never looks them up, and resolving every part
    for every class cost three times the rows (720 k instead of 263 k at 10,000 units). -#}
with recursive

classes as (

    select
        class_id,
        min(serial_number) as serial_number,
        any_value(effectivity_date) as effectivity_date,
        any_value(serial_prefix) as serial_prefix,
        any_value(product_part_number) as product_part_number
    from {{ ref('int_units_classified') }}
    group by class_id

),

{#- Spark's recursion takes UNION ALL only: a path ends where it meets a part already on it. The
    recursion reads models only, not CTEs: DuckDB 1.5.6 returned a varying share of its rows, or
    crashed, when it started from `classes` (read twice) or stepped through deduplicated edges. -#}
reached as (

    select distinct
        product_part_number,
        product_part_number as part_number,
        {{ list_of('product_part_number') }} as path,
        false as is_cycle
    from {{ ref('int_units_classified') }}

    union all

    select
        r.product_part_number,
        e.child_part_number,
        {{ list_append('r.path', 'e.child_part_number') }},
        {{ list_has('r.path', 'e.child_part_number') }}
    from reached r
    join {{ ref('int_bom_edges') }} e on e.parent_part_number = r.part_number
    where not r.is_cycle and {{ list_len('r.path') }} < 64

),

structure as (

    select distinct product_part_number, part_number from reached

),

revisions as (

    select * from {{ ref('int_revisions_released') }}

),

effective as (

    select c.class_id, r.part_number, r.revision, r.released_at
    from classes c
    join structure s on s.product_part_number = c.product_part_number
    join revisions r
      on r.part_number = s.part_number
     and (
            (r.eco_number is null and cast(r.released_at as date) <= c.effectivity_date)
            or (r.effectivity_type = 'date' and c.effectivity_date >= r.effective_date)
            or (
                r.effectivity_type = 'serial'
                and c.serial_prefix = r.effective_serial_prefix
                and c.serial_number >= r.effective_from
            )
         )

)

select class_id, part_number, revision, released_at
from effective
qualify row_number() over (
    partition by class_id, part_number order by released_at desc, revision desc
) = 1
