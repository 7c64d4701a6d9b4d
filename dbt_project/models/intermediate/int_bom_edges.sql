{#- Which part any revision of a part places directly under it, once per pair: the edges
    int_designed_revisions_resolved walks down from each product. A table of its own, not a CTE:
    DuckDB 1.5.6 returned a varying share of a recursive CTE's rows, or crashed, when its
    recursive step read a CTE that deduplicates (DISTINCT, GROUP BY); from a table it is exact. -#}
select distinct parent_part_number, child_part_number
from {{ ref('stg_plm__bom_lines') }}
