-- twin: what it holds now. Parameters: $serial.
select part_number, revision, quantity, since from twin.unit_components where serial_number = $serial
order by part_number, revision
