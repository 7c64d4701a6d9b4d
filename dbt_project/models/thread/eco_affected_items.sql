{#- What each ECO changes (an addition to the thread schema). -#}
select eco_number, part_number, from_revision, to_revision
from {{ ref('stg_plm__eco_affected_items') }}
