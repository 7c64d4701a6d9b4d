-- Which assemblies and products use a part, at which of their revisions, up to the products.
-- Parameters: $part.
with recursive used_in(parent, parent_revision, parent_state, child, quantity, depth, path) as (
    select parent_part_number, parent_revision, parent_revision_state, child_part_number, quantity, 1,
           [child_part_number]
    from thread.bom_lines
    where child_part_number = $part
    union all
    select b.parent_part_number, b.parent_revision, b.parent_revision_state, b.child_part_number, b.quantity,
           u.depth + 1, list_append(u.path, b.child_part_number)
    from used_in u
    join thread.bom_lines b on b.child_part_number = u.parent
    where not list_contains(u.path, b.child_part_number) and u.depth < 32
)

select
    parent as used_in,
    p.part_type,
    string_agg(distinct parent_revision || ' (' || coalesce(parent_state, '?') || ')', ', ' order by parent_revision || ' (' || coalesce(parent_state, '?') || ')') as at_revisions,
    min(depth) as levels_above,
    any_value(child) filter (where depth = 1) as direct_child,
    max(quantity) filter (where depth = 1) as quantity_per_parent,
    case when p.part_type = 'product' then (
        select count(distinct d.serial_number) from thread.unit_as_designed d
        join thread.units x using (serial_number)
        where d.part_number = $part and x.product_part_number = parent) end as units_designed_with_it
from used_in
left join thread.parts p on p.part_number = parent
group by parent, p.part_type
order by levels_above, used_in
