from ..sources import source_sensor

sensor = source_sensor("service")
