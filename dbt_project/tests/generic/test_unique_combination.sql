{#- dbt_utils is out of reach offline (no package hub); this is the one test we needed from it.
    `written_by_shard`: a sharded model's rows are unique per unit, so only the rows the run wrote can
    be new duplicates (a duplicate pair shares its serial, and with `eco_column` its ECO, so both
    rows are among them): those of the shards it rebuilt (int_shards_changed: every shard on a first
    build or a --full-refresh; of the model's family `aspect`), and with `eco_column` the rows of the
    ECOs recomputed for every unit. Checking only those, an ECO's refresh at 100,000 units no longer
    groups eco_impact's tens of millions of rows (11 s). -#}
{% test unique_combination(model, columns, written_by_shard=false, aspect=none, eco_column=none) %}
{%- set sharded = written_by_shard and target.type != 'spark' %}
select {{ columns | join(', ') }}, count(*) as n
from {{ model }}
{%- if sharded %}
where {{ shard_of('serial_number') }} in {{ shards_to_build(aspect) }}
  {%- if eco_column %}
   or {{ eco_column }} in (select eco_number from {{ ref('int_ecos_changed') }})
  {%- endif %}
{%- endif %}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
