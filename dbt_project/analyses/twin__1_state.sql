-- twin: the live model of one unit. Parameters: $serial.
select * from twin.unit_twin where serial_number = $serial
