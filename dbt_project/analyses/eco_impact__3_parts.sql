-- eco-impact: what it changes. Parameters: $eco.
select part_number, from_revision, to_revision from thread.eco_affected_items where eco_number = $eco
order by part_number
