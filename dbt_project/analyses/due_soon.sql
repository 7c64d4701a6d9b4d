-- The fleet by remaining useful life: the units due for maintenance soonest, per the model
-- learned from the thread's failure history (twin.unit_twin.rul_hours; null where no model applies).
select
    serial_number,
    product_part_number as product,
    rul_hours,
    last_telemetry_at + to_hours(cast(round(rul_hours) as bigint)) as due_by,
    health_state,
    rul_model_version as model
from twin.unit_twin
where rul_hours is not null and status <> 'scrapped'
order by rul_hours, serial_number
limit 25
