-- twin: its sensors. Parameters: $serial.
select sensor, last_value, last_ts, mean_24h, max_24h, warning_high, critical_high, state
from twin.unit_sensor_state where serial_number = $serial order by sensor
