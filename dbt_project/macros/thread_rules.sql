{#- The serial prefix of the effectivity rule: the text before the last '-'. -#}
{% macro serial_prefix(column) -%}
    coalesce(regexp_extract({{ column }}, '^(.*)-[^-]*$', 1), '')
{%- endmacro %}

{#- Which held revision a removal takes: the recorded one when it is held, else (recorded as
    null) the earliest-released revision held; null when nothing matching is held. -#}
{% macro removal_target(state, recorded) -%}
    case
        when {{ recorded }} is null then
            {{ list_min(list_where(state, 'x', 'x.quantity > 1e-9')) }}.revision
        when {{ list_any(state, 'x', 'x.revision = ' ~ recorded ~ ' and x.quantity > 1e-9') }}
            then {{ recorded }}
    end
{%- endmacro %}

{#- Hours between two timestamps, as a floating-point number. -#}
{% macro hours_between(start, finish) -%}
    ({{ epoch_seconds(finish) }} - {{ epoch_seconds(start) }}) / 3600.0
{%- endmacro %}
