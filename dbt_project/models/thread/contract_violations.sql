{#-
    Everything that breaks a contract, in one place: what the boundary rejected or warned about
    at extraction (current snapshot findings, all event findings, failed exports), and the
    cross-system integrity rules evaluated on the thread (those on the telemetry in
    int_telemetry_integrity_checked).
-#}
with findings as (

    select * from {{ ref('stg_audit__contract_findings') }}

),

extractions as (

    select * from {{ ref('stg_audit__extractions') }}

),

{#- A snapshot's findings stay current until a later extraction replaces its data; a failed
    extraction after that is reported too (the last good data is still what is served). -#}
current_batches as (

    select system, entity, batch_id from (
        select system, entity, batch_id
        from extractions
        where status = 'ok' and is_changed
        qualify row_number() over (partition by system, entity order by extracted_at desc) = 1
    )
    union all
    select e.system, e.entity, e.batch_id
    from extractions e
    where e.status = 'failed'
      and e.extracted_at > coalesce((
            select max(x.extracted_at) from extractions x
            where x.system = e.system and x.entity = e.entity and x.status = 'ok'
        ), cast('0001-01-01' as {{ timestamptz() }}))

),

boundary as (

    select
        f.system, f.entity, f.rule,
        coalesce(nullif(f.record_key, ''), f.source || coalesce(' line ' || f.source_row, '')) as record_key,
        f.reason || coalesce(' (' || f.source || coalesce(', row ' || f.source_row, '') || ')', '') as detail,
        f.severity,
        f.extracted_at as detected_at
    from findings f
    -- Rows an event export rejected stay rejected; a whole event export that could not be read
    -- is current only until a later extraction of it succeeds (like a snapshot's).
    where (f.mode = 'events' and f.rule <> 'export readable')
       or f.batch_id in (select batch_id from current_batches)

),

units as (select * from {{ ref('stg_mes__units') }}),
parts as (select * from {{ ref('stg_plm__parts') }}),

as_built_unknown_part as (

    select 'mes' as system, 'as_built_components' as entity, 'as-built part exists in PLM' as rule,
           a.serial_number || '/' || a.part_number as record_key,
           'unit ' || a.serial_number || ' has part ' || a.part_number || ' rev ' || a.revision
               || ' installed, but PLM has no part ' || a.part_number as detail,
           'error' as severity
    from {{ ref('stg_mes__as_built_components') }} a
    anti join parts p using (part_number)

),

as_built_unknown_unit as (

    select 'mes', 'as_built_components', 'as-built unit exists in MES',
           a.serial_number || '/' || a.part_number,
           'as-built row for ' || a.serial_number || ', which is not a unit in MES', 'error'
    from {{ ref('stg_mes__as_built_components') }} a
    anti join units u using (serial_number)

),

unknown_work_order as (

    select 'mes', 'units', 'unit work order exists in ERP', u.serial_number,
           'unit ' || u.serial_number || ' was built under work order ' || u.work_order_number
               || ', which ERP does not have', 'error'
    from units u
    where u.work_order_number is not null
      and u.work_order_number not in (select work_order_number from {{ ref('stg_erp__work_orders') }})

),

unknown_service_serial as (

    select 'service', 'service_events', 'service event names a known serial', e.event_id,
           'service event ' || e.event_id || ' is for ' || e.serial_number || ', which MES does not know',
           'error'
    from {{ ref('stg_service__service_events') }} e
    anti join units u using (serial_number)

),

unknown_installation_serial as (

    select 'service', 'installations', 'installation names a known serial', i.serial_number,
           'installation of ' || i.serial_number || ', which MES does not know', 'error'
    from {{ ref('stg_service__installations') }} i
    anti join units u using (serial_number)

),

bom_cycles as (

    select 'plm', 'bom_lines', 'BOM has no cycle', part_number,
           'part ' || part_number || ' contains itself: ' || min(example_path), 'error'
    from {{ ref('int_structures_exploded') }}
    where is_cycle
    group by part_number

),

design_gaps as (

    select 'plm', 'part_revisions', 'designed revision exists',
           s.part_number || ' in ' || c.product_part_number,
           count(distinct c.serial_number) || ' units of ' || c.product_part_number || ' (e.g. '
               || min(c.serial_number) || ') use ' || s.part_number
               || ' but no revision of it is effective for them', 'warning'
    from {{ ref('int_structures_exploded') }} s
    join {{ ref('int_units_classified') }} c using (class_id)
    where s.revision is null and not s.is_cycle
    group by s.part_number, c.product_part_number

),

removal_not_held as (

    select 'service', 'service_events', 'removed part is held', changed_by,
           'service event ' || changed_by || ' removes ' || part_number || coalesce(' rev ' || recorded_revision, '')
               || ' from ' || serial_number || ', which did not hold it; only the installation applied',
           'warning'
    from {{ ref('int_configuration_changes_resolved') }}
    where op = 'remove' and delta = 0

),

eco_unknown_part as (

    select 'plm', 'eco_affected_items', 'ECO names a known part revision', i.eco_number || '/' || i.part_number,
           i.eco_number || ' changes ' || i.part_number || ' to rev ' || i.to_revision
               || ', which PLM does not have', 'error'
    from {{ ref('stg_plm__eco_affected_items') }} i
    anti join {{ ref('stg_plm__part_revisions') }} r
      on r.part_number = i.part_number and r.revision = i.to_revision

),

integrity as (

    select * from as_built_unknown_part
    union all select * from as_built_unknown_unit
    union all select * from unknown_work_order
    union all select * from unknown_service_serial
    union all select * from unknown_installation_serial
    union all select system, entity, rule, record_key, detail, severity from {{ ref('int_telemetry_integrity_checked') }}
    union all select * from bom_cycles
    union all select * from design_gaps
    union all select * from removal_not_held
    union all select * from eco_unknown_part

)

select system, entity, rule, record_key, detail, severity, detected_at from boundary
union all
select system, entity, rule, record_key, detail, severity, current_timestamp as detected_at from integrity
