{#- Engineering change orders as PLM states them (an addition to the thread schema). -#}
select eco_number, title, reason, state, created_at, released_at, effectivity_type, effective_from, field_action
from {{ ref('stg_plm__ecos') }}
