-- The fleet by remaining useful life: the units due for maintenance soonest, per the model
-- learned from the thread's failure history (twin.unit_twin.rul_hours; null where no model
-- applies), with what the model knows: how many failed units it learned from and its error on
-- units held out of training. due_by is the last reading plus the estimate; overdue when it is
-- past. An estimate of 0 while every sensor is within its limits says so, with why.
select
    t.serial_number,
    t.product_part_number as product,
    t.rul_hours,
    t.last_telemetry_at + to_hours(cast(round(t.rul_hours) as bigint)) as due_by,
    t.last_telemetry_at + to_hours(cast(round(t.rul_hours) as bigint)) < now() as overdue,
    t.health_state,
    t.rul_model_version as model,
    m.training_units as model_learned_from_failed_units,
    round(m.rmse_hours, 1) as model_rmse_hours,
    concat_ws('; ',
        case when t.rul_hours <= 0 and t.health_state = 'ok'
             then 'at or past the end of life the model learned from ' || m.training_units
                  || ' failed units, although every sensor is within its limits: inspect' end,
        case when m.held_out_units = 0
             then 'model not validated: too few failed units to hold any out of training' end,
        case when t.is_stale then 'twin stale: ' || t.stale_reason end
    ) as note
from twin.unit_twin t
left join twin.rul_models m on m.version = t.rul_model_version
where t.rul_hours is not null and t.status <> 'scrapped'
order by due_by, t.serial_number
limit 25
