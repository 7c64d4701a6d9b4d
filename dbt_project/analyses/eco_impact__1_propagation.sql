-- eco-impact: how far the ECO travelled. Parameters: $eco.
select e.eco_number, e.title, e.state, e.effectivity_type, e.effective_from, e.field_action,
       p.released_at, p.mes_adopted_at, p.erp_adopted_at, p.service_notified_at,
       round(p.mes_lag_hours, 1) as mes_lag_hours, round(p.erp_lag_hours, 1) as erp_lag_hours,
       round(p.service_lag_hours, 1) as service_lag_hours, p.missing_systems, p.status
from thread.ecos e
left join thread.eco_propagation p using (eco_number)
where e.eco_number = $eco
