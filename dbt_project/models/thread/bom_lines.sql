{#- The engineering BOM with the state of the parent revision it belongs to (where-used reads it). -#}
select
    b.parent_part_number,
    b.parent_revision,
    r.state as parent_revision_state,
    b.find_number,
    b.child_part_number,
    b.quantity
from {{ ref('stg_plm__bom_lines') }} b
left join {{ ref('stg_plm__part_revisions') }} r
  on r.part_number = b.parent_part_number and r.revision = b.parent_revision
