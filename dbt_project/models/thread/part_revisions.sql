select
    part_number,
    revision,
    state,
    released_at,
    eco_number,
    description
from {{ ref('stg_plm__part_revisions') }}
