"""The product catalogue: parts and their initial engineering BOMs, before the simulation starts."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._random import stream

PRODUCT_LINES = [
    ("P-100", "HX200 centrifugal pump", "HX200"),
    ("P-200", "CX500 screw compressor", "CX500"),
    ("P-300", "VX80 vacuum pump", "VX80"),
    ("P-400", "TX30 turbo blower", "TX30"),
    ("P-500", "MX12 metering pump", "MX12"),
    ("P-600", "RX90 rotary lobe pump", "RX90"),
]

ASSEMBLY_NAMES = [
    "Motor assembly", "Impeller assembly", "Bearing housing", "Seal module", "Drive train",
    "Control unit", "Cooling module", "Inlet module", "Outlet module", "Frame", "Gearbox",
    "Rotor assembly", "Stator assembly", "Valve block", "Filter module", "Lubrication module",
    "Sensor harness", "Coupling assembly", "Casing", "Power module",
]
COMPONENT_NAMES = [
    "Shaft", "Impeller", "Mechanical seal", "Gasket", "Coupling", "Fan", "Valve", "Spring",
    "Bushing", "Housing cover", "Terminal box", "Cable", "PCB", "Capacitor", "Pressure sensor",
    "Temperature sensor", "Rotor", "Stator winding", "Key", "Washer", "Clamp", "Bracket",
    "Filter element", "Nozzle", "Diffuser", "Wear ring", "Retainer", "Plug", "Sleeve", "Pin",
]
HARDWARE_NAMES = ["Bolt M8x30", "Bolt M10x40", "Nut M8", "Washer 8mm", "O-ring 40x3",
                  "O-ring 60x3", "Screw M5x12", "Dowel pin 6mm", "Circlip 25", "Cable tie"]
# Parts that wear out in the field: the simulator's failures, retrofits and reliability signal.
WEAR_NAMES = ["Bearing 6205", "Bearing 6308", "Mechanical seal", "Impeller", "Motor winding",
              "Lip seal", "Drive belt", "Wear plate"]
SENSORS = [
    # sensor, unit, typical value, warning_high, critical_high
    ("vibration_mm_s", "mm/s", 2.2, 4.5, 7.1),
    ("bearing_temp_c", "degC", 55.0, 80.0, 95.0),
    ("discharge_pressure_bar", "bar", 6.0, 9.0, 10.5),
    ("motor_current_a", "A", 18.0, 26.0, 30.0),
]


@dataclass
class Part:
    part_number: str
    name: str
    part_type: str
    make_buy: str
    unit_of_measure: str
    created_at: float  # days relative to the simulation start
    released_at: float
    is_wear: bool = False
    is_tracked: bool = False  # has its own serial number on the line
    base_failure_per_day: float = 0.0


@dataclass
class Catalogue:
    parts: dict[str, Part]
    # (parent, revision) -> list of (find_number, child, quantity)
    bom: dict[tuple[str, str], list[tuple[int, str, float]]]
    products: list[tuple[str, str, str]]  # part_number, name, serial prefix
    bad_revisions: set[tuple[str, str]] = field(default_factory=set)
    # product -> every part number its initial structure uses (for where-used)
    product_parts: dict[str, set[str]] = field(default_factory=dict)


def build_catalogue(seed: int, n_parts: int) -> Catalogue:
    rng = stream(seed, "catalogue")
    n_products = max(2, min(len(PRODUCT_LINES), n_parts // 300))
    products = PRODUCT_LINES[:n_products]
    parts: dict[str, Part] = {}
    bom: dict[tuple[str, str], list[tuple[int, str, float]]] = {}
    counters = {"A": 1000, "S": 2000, "C": 30000, "H": 9000, "SW": 100}

    def new_part(prefix, name, part_type, make_buy="make", uom="ea", **kw) -> Part:
        counters[prefix] += 1
        number = f"{prefix}-{counters[prefix]}"
        released = -float(rng.uniform(60, 420))
        part = Part(number, name, part_type, make_buy, uom, released - float(rng.uniform(5, 60)),
                    released, **kw)
        parts[number] = part
        return part

    def add_line(parent: str, child: str, qty: float) -> None:
        lines = bom.setdefault((parent, "A"), [])
        if any(c == child for _, c, _ in lines):
            return
        lines.append(((len(lines) + 1) * 10, child, qty))

    hardware = [new_part("H", HARDWARE_NAMES[i % len(HARDWARE_NAMES)]
                         + ("" if i < len(HARDWARE_NAMES) else f" ({i})"), "component", "buy")
                for i in range(max(4, n_parts // 30))]
    budget = n_parts - len(hardware) - 2 * n_products - 1
    per_product = budget / n_products
    shared_control = None
    product_parts: dict[str, set[str]] = {}
    for p_number, p_name, _ in products:
        product = Part(p_number, p_name, "product", "make", "ea", -500.0, -float(rng.uniform(430, 480)))
        parts[p_number] = product
        sw = new_part("SW", f"{p_name.split()[0]} firmware", "software")
        add_line(p_number, sw.part_number, 1)
        n_asm = max(4, round(per_product * 0.3))
        n_comp = max(8, round(per_product) - n_asm)
        l1n = max(2, round(n_asm * 0.25))
        l2n = max(l1n, round(n_asm * 0.5))
        l3n = max(1, n_asm - l1n - l2n)
        l1 = [new_part("A", rng.choice(ASSEMBLY_NAMES), "assembly") for _ in range(l1n)]
        l2 = [new_part("S", rng.choice(ASSEMBLY_NAMES), "assembly") for _ in range(l2n)]
        l3 = [new_part("S", rng.choice(ASSEMBLY_NAMES), "assembly") for _ in range(l3n)]
        for a in l1:
            add_line(p_number, a.part_number, 1)
        if shared_control is None:
            shared_control = l1[0]
        else:
            add_line(p_number, shared_control.part_number, 1)  # one assembly shared by products
        for i, s in enumerate(l2):
            parent = l1[i] if i < len(l1) else l1[int(rng.integers(len(l1)))]
            add_line(parent.part_number, s.part_number, float(rng.choice([1, 1, 1, 2])))
        for i, s in enumerate(l3):
            parent = l2[i % len(l2)] if i < len(l2) else l2[int(rng.integers(len(l2)))]
            add_line(parent.part_number, s.part_number, 1)
        holders = l2 + l3
        for i in range(n_comp):
            if rng.random() < 0.05:
                name = str(rng.choice(WEAR_NAMES))
                comp = new_part("C", name, "component", "buy", is_wear=True, is_tracked=True,
                                base_failure_per_day=float(rng.uniform(1 / 30000, 1 / 10000)))
            else:
                name = str(rng.choice(COMPONENT_NAMES))
                make_buy = "make" if rng.random() < 0.3 else "buy"
                uom = "m" if name == "Cable" else ("kg" if rng.random() < 0.03 else "ea")
                comp = new_part("C", name, "component", make_buy, uom,
                                is_tracked=name in ("PCB", "Rotor", "Pressure sensor"))
            holder = holders[i] if i < len(holders) else holders[int(rng.integers(len(holders)))]
            qty = float(rng.choice([1, 1, 1, 1, 2, 2, 4])) if comp.unit_of_measure == "ea" else round(
                float(rng.uniform(0.5, 3.0)), 2)
            add_line(holder.part_number, comp.part_number, qty)
        for h in holders + l1:
            for hw in rng.choice(len(hardware), size=int(rng.integers(1, 3)), replace=False):
                add_line(h.part_number, hardware[int(hw)].part_number, float(rng.choice([2, 4, 6, 8, 12])))
        for h in holders:  # every assembly holds something
            if (h.part_number, "A") not in bom:
                add_line(h.part_number, hardware[0].part_number, 4)
        product_parts[p_number] = _reachable(p_number, bom)
    # Every product carries a wear part, so that every fleet fails, gets retrofitted and is scored.
    for p_number, _, _ in products:
        if not any(parts[x].is_wear for x in product_parts[p_number]):
            comp = new_part("C", "Bearing 6205", "component", "buy", is_wear=True, is_tracked=True,
                            base_failure_per_day=1 / 15000)
            holder = next(x for x in sorted(product_parts[p_number]) if parts[x].part_type == "assembly")
            add_line(holder, comp.part_number, 2)
            product_parts[p_number] = _reachable(p_number, bom)
    wear = sorted(p.part_number for p in parts.values() if p.is_wear)
    bad = {(w, "A") for w in wear if rng.random() < 0.5}
    return Catalogue(parts, bom, list(products), bad, product_parts)


def _reachable(root: str, bom) -> set[str]:
    seen, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        for _, child, _ in bom.get((parent, "A"), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen
