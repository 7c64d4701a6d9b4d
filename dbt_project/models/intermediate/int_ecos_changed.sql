{#-
    The ECOs whose digest differs from the one of the last successful build
    (`main.eco_digests_built`, kept by the orchestration beside the shard digests): new, changed or
    gone. `eco_impact` recomputes their rows for every unit. DuckDB only.
-#}
{{ config(enabled=(target.type != 'spark')) }}

select coalesce(n.eco_number, b.eco_number) as eco_number
from {{ ref('int_ecos_digested') }} n
full outer join main.eco_digests_built b on n.eco_number = b.eco_number
where n.digest is distinct from b.digest
