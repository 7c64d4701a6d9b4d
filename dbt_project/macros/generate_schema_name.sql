{#- Schemas are named exactly as configured (`thread`, `twin`, `staging`…), not `<target>_<name>`:
    analysts query `thread.units`, as the thread schema specifies. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name is not none else target.schema }}
{%- endmacro %}
