-- Where the pieces of a lot went (one piece for a serial number), by product, site and unit
-- status. Reads the section before (carriers).
select
    product_part_number,
    site,
    status,
    count(distinct serial_number) as units,
    sum(quantity) as pieces_installed,
    sum(quantity_held) as pieces_carried_now
from carriers
group by all
order by pieces_installed desc, product_part_number, site, status
