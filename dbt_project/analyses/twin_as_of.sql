-- twin --as-of: the unit's twin as it was published then, the last state published at or before
-- $as_of, with the time it was published (valid_from) and replaced (valid_to). Parameters:
-- $serial, $as_of.
select *
from twin.unit_twin_history
where serial_number = $serial
  and valid_from <= $as_of
  and (valid_to is null or valid_to > $as_of)
