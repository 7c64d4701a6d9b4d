{#-
    The as-designed structure of every effectivity class, all levels, product included.
    A child's revision is its own designed revision; its quantity multiplies down the path.
    A part without an effective revision stays in (revision null: a design gap) and is not
    expanded. A child that is already on its own path is a BOM cycle: it is kept as a marked row
    (reported in thread.contract_violations) and never expanded, so the recursion always ends.
-#}
with recursive

classes as (

    select distinct class_id, product_part_number from {{ ref('int_units_classified') }}

),

designed as (

    select * from {{ ref('int_designed_revisions_resolved') }}

),

bom as (

    select parent_part_number, parent_revision, child_part_number, quantity
    from {{ ref('stg_plm__bom_lines') }}

),

exploded as (

    select
        c.class_id,
        c.product_part_number as part_number,
        d.revision,
        1.0::double as quantity,
        {{ list_of('c.product_part_number') }} as path,
        false as is_cycle
    from classes c
    left join designed d on d.class_id = c.class_id and d.part_number = c.product_part_number

    union all

    select
        e.class_id,
        b.child_part_number,
        d.revision,
        e.quantity * b.quantity,
        {{ list_append('e.path', 'b.child_part_number') }},
        {{ list_has('e.path', 'b.child_part_number') }}
    from exploded e
    join bom b on b.parent_part_number = e.part_number and b.parent_revision = e.revision
    left join designed d on d.class_id = e.class_id and d.part_number = b.child_part_number
    where not e.is_cycle and {{ list_len('e.path') }} < 64

)

select
    class_id,
    part_number,
    revision,
    is_cycle,
    sum(quantity) as quantity,
    min({{ list_join('path', "' > '") }}) as example_path
from exploded
group by class_id, part_number, revision, is_cycle
