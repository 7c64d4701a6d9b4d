"""Engineering change over time: ECOs, revisions, and how MES, ERP and Service pick them up.

Times are float days from the simulation start (negative = before it). Everything is planned up
front from keyed random streams; what a source shows is what happened by the horizon.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field

from ._catalogue import Catalogue, Part
from ._random import stream
from ._schedule import UnitSchedule

REASONS_RETROFIT = ["Premature wear of {name} in the field", "Field failures of {name}: material change",
                    "Safety: {name} overheating under load"]
REASONS_OTHER = ["Cost reduction on {name}", "Supplier change for {name}", "Manufacturability of {name}",
                 "Documentation correction for {name}", "Tolerance change on {name}",
                 "Obsolescence of {name}"]


@dataclass
class Revision:
    part_number: str
    revision: str
    created: float
    eco_number: str | None
    release: float | None  # planned; None when its ECO is cancelled
    cancel: float | None = None
    obsoleted: float | None = None  # a replacing ECO made the part obsolete
    description: str = ""


@dataclass
class Eco:
    eco_number: str
    title: str
    reason: str
    created: float
    outcome: str  # released | cancelled
    decided: float
    effectivity_type: str
    effective_from: str
    effective_day: float | None  # date effectivity as a day number
    effective_serial: str | None
    field_action: str
    affected: list[tuple[str, str | None, str]]  # part, from, to
    swaps: list[tuple[str, str | None, str, str]]  # removed part, rev, installed part, rev
    products: list[str]  # products whose line must adopt it


@dataclass
class Adoption:
    # (product, part) -> sorted [(effective_at, revision, eco, instruction_id)]
    instructions: dict[tuple[str, str], list[tuple[float, str, str | None, str]]] = field(default_factory=dict)
    erp_log: list[tuple[str, str, str, float]] = field(default_factory=list)  # eco, part, rev, at
    # (product, part) -> the effective_at times of `instructions`, for bisecting without rebuilding
    times: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    bulletins: list[tuple[str, str, str, float, str]] = field(default_factory=list)  # no, eco, title, at, action


def _next_letter(existing: list[str]) -> str:
    def num(r):
        n = 0
        for ch in r:
            n = n * 26 + (ord(ch) - 64)
        return n

    n = max(num(r) for r in existing) + 1
    out = ""
    while n:
        n, rem = divmod(n - 1, 26)
        out = chr(65 + rem) + out
    return out


class Engineering:
    def __init__(self, cat: Catalogue, seed: int, units_per_day: float, schedule: UnitSchedule):
        self.cat, self.seed, self.schedule = cat, seed, schedule
        self.revisions: dict[str, list[Revision]] = {
            p.part_number: [Revision(p.part_number, "A", p.created_at, None, p.released_at,
                                     description="Initial release")]
            for p in cat.parts.values()
        }
        self.bom = dict(cat.bom)
        self.bad = set(cat.bad_revisions)
        self.ecos: list[Eco] = []
        self.where_used = {p: set() for p in cat.parts}
        for product, used in cat.product_parts.items():
            for x in used:
                self.where_used[x].add(product)
        self.parents: dict[str, set[str]] = {}
        for (parent, _), lines in self.bom.items():
            for _, child, _ in lines:
                self.parents.setdefault(child, set()).add(parent)
        self.busy_until: dict[str, float] = {}
        self.eco_rate = max(0.12, units_per_day * 0.06)
        self.planned_days = 0
        self._counter = 1000
        self._new_parts = 0

    # -- planning ------------------------------------------------------------------------------
    def plan_until(self, day: int) -> None:
        while self.planned_days < day:
            self._plan_day(self.planned_days)
            self.planned_days += 1

    def _plan_day(self, d: int) -> None:
        rng = stream(self.seed, "eco-day", d)
        for _ in range(int(rng.poisson(self.eco_rate))):
            self._plan_eco(d + float(rng.uniform(0.3, 0.7)), rng)

    def released_revision(self, part: str, t: float) -> str:
        best = None
        for r in self.revisions[part]:
            if r.release is not None and r.release <= t and (best is None or r.release >= best.release):
                best = r
        return best.revision if best else self.revisions[part][0].revision

    def _pick(self, rng, t, kinds, prefer_wear=False):
        cands = [p for p in self.cat.parts.values()
                 if p.part_type in kinds and self.busy_until.get(p.part_number, -1e9) < t
                 and p.released_at < t and self.where_used[p.part_number]]
        if prefer_wear:
            wear = [p for p in cands if p.is_wear]
            cands = wear or cands
        return cands[int(rng.integers(len(cands)))] if cands else None

    def _plan_eco(self, t: float, rng) -> None:
        self._counter += 1
        number = f"ECO-{self._counter}"
        kind = rng.choice(["component", "assembly", "replace", "product"], p=[0.62, 0.2, 0.12, 0.06])
        bad_fix = rng.random() < 0.35
        affected: list[tuple[str, str | None, str]] = []
        swaps: list[tuple[str, str | None, str, str]] = []
        outcome = rng.choice(["released", "cancelled"], p=[0.88, 0.12])
        decided = t + float(rng.uniform(3, 20))
        new_bom: dict[tuple[str, str], list] = {}
        obsolete_part = None

        def revise(part: Part, bad: bool = False) -> str:
            revs = self.revisions[part.part_number]
            frm = self.released_revision(part.part_number, t)
            to = _next_letter([r.revision for r in revs])
            revs.append(Revision(part.part_number, to, t, number,
                                 decided if outcome == "released" else None,
                                 decided if outcome == "cancelled" else None))
            affected.append((part.part_number, frm, to))
            swaps.append((part.part_number, frm, part.part_number, to))
            if (part.part_number, frm) in self.bom:
                new_bom[(part.part_number, to)] = list(self.bom[(part.part_number, frm)])
            if bad and part.is_wear:
                self.bad.add((part.part_number, to))
            self.busy_until[part.part_number] = decided
            return to

        if kind == "component":
            n = 1 if rng.random() < 0.7 else 2
            for _ in range(n):
                part = self._pick(rng, t, ("component", "software"), prefer_wear=bad_fix)
                if part and part.part_number not in {a[0] for a in affected}:
                    revise(part, bad=rng.random() < 0.1)
        elif kind == "assembly":
            part = self._pick(rng, t, ("assembly",))
            if part:
                to = revise(part)
                lines = new_bom.get((part.part_number, to))
                if lines:
                    i = int(rng.integers(len(lines)))
                    fn, child, qty = lines[i]
                    lines[i] = (fn, child, qty + (1 if qty >= 1 else 0.5))
        elif kind == "replace":
            holder = self._pick(rng, t, ("assembly",))
            if holder:
                frm_holder = self.released_revision(holder.part_number, t)
                lines = self.bom.get((holder.part_number, frm_holder), [])
                comps = [(i, ln) for i, ln in enumerate(lines)
                         if self.cat.parts[ln[1]].part_type == "component"
                         and self.busy_until.get(ln[1], -1e9) < t]
                if comps:
                    to = revise(holder)
                    i, (fn, old, qty) = comps[int(rng.integers(len(comps)))]
                    old_part = self.cat.parts[old]
                    self._new_parts += 1
                    new_number = f"C-{60000 + self._new_parts}"
                    new = Part(new_number, old_part.name + " (improved)", "component",
                               old_part.make_buy, old_part.unit_of_measure, t, decided,
                               is_wear=old_part.is_wear, is_tracked=old_part.is_tracked,
                               base_failure_per_day=old_part.base_failure_per_day * 0.6)
                    self.cat.parts[new_number] = new
                    self.revisions[new_number] = [Revision(new_number, "A", t, number,
                                                           decided if outcome == "released" else None,
                                                           decided if outcome == "cancelled" else None)]
                    self.where_used[new_number] = set(self.where_used[holder.part_number])
                    self.parents[new_number] = {holder.part_number}
                    new_bom[(holder.part_number, to)][i] = (fn, new_number, qty)
                    affected.append((new_number, None, "A"))
                    old_rev = self.released_revision(old, t)
                    swaps.append((old, old_rev, new_number, "A"))
                    obsolete_part = (old, old_rev)
                    self.busy_until[old] = decided
        else:
            product = self.cat.products[int(rng.integers(len(self.cat.products)))][0]
            if self.busy_until.get(product, -1e9) < t:
                revise(self.cat.parts[product])
                sw = [c for _, c, _ in self.bom.get((product, self.released_revision(product, t)), [])
                      if self.cat.parts[c].part_type == "software"]
                if sw and self.busy_until.get(sw[0], -1e9) < t:
                    revise(self.cat.parts[sw[0]])
        if not affected:
            self._counter -= 1
            return
        self.bom.update(new_bom)
        if obsolete_part and outcome == "released":
            for r in self.revisions[obsolete_part[0]]:
                if r.revision == obsolete_part[1]:
                    r.obsoleted = decided
        names = self.cat.parts[affected[0][0]].name
        has_bad = any((p, f) in self.bad for p, f, _ in affected if f)
        if has_bad:
            field_action = "retrofit" if rng.random() < 0.8 else "inspect"
        else:
            field_action = str(rng.choice(["none", "inspect", "retrofit"], p=[0.8, 0.1, 0.1]))
        reasons = REASONS_RETROFIT if field_action == "retrofit" else REASONS_OTHER
        reason = str(rng.choice(reasons)).format(name=names)
        products = sorted(set().union(*(self.where_used[p] for p, _, _ in affected)))
        if rng.random() < 0.65 or not products:
            eff_day = float(int(decided + rng.uniform(0, 21)))
            eff_type, eff_from, eff_serial = "date", self.schedule.day_text(eff_day), None
        else:
            product = products[int(rng.integers(len(products)))]
            eff_serial = self.schedule.serial_started_after(product, decided + float(rng.uniform(3, 30)))
            eff_type, eff_from, eff_day = "serial", eff_serial, None
            products = [product]
        self.ecos.append(Eco(number, f"{kind.capitalize()} change: {names}", reason, t, str(outcome),
                             decided, eff_type, eff_from, eff_day, eff_serial, field_action,
                             affected, swaps, products))

    # -- adoption by the other systems ----------------------------------------------------------
    def adoption(self) -> Adoption:
        ad = Adoption()
        for product, _, _ in self.cat.products:
            for x in sorted(self.cat.product_parts[product]):
                part = self.cat.parts[x]
                ad.instructions.setdefault((product, x), []).append(
                    (self.cat.parts[product].released_at + 1, "A", None, f"WI-{product}-{x}-A"))
        for eco in self.ecos:
            if eco.outcome != "released":
                continue
            rng = stream(self.seed, "adoption", eco.eco_number)
            r = eco.decided
            parts = [a for a in eco.affected]
            # MES: deliberate gaps (never, or only some parts) and late lines.
            gap = rng.random()
            mes_parts = [] if gap < 0.05 else (parts[:-1] if gap < 0.12 and len(parts) > 1 else parts)
            if gap >= 0.05 and gap < 0.12 and len(parts) == 1:
                mes_parts = []
            late = rng.random() < 0.22
            for product in eco.products:
                if eco.effectivity_type == "date":
                    at = max(r + float(rng.uniform(0.5, 8)), eco.effective_day)
                else:
                    start = self.schedule.start_of(eco.effective_serial)
                    at = max(r + 0.5, (start - 0.01) if start is not None else r + 5)
                if late:
                    at += float(rng.uniform(1, 10))
                for part, _, to in mes_parts:
                    if product in self.where_used.get(part, ()) or part == product:
                        ad.instructions.setdefault((product, part), []).append(
                            (at + float(rng.uniform(0, 0.2)), to, eco.eco_number,
                             f"WI-{eco.eco_number}-{product}-{part}"))
            gap = rng.random()
            erp_parts = [] if gap < 0.05 else (parts[1:] if gap < 0.09 and len(parts) > 1 else parts)
            for part, _, to in erp_parts:
                ad.erp_log.append((eco.eco_number, part, to, r + float(rng.uniform(0.2, 7))))
            wants = eco.field_action != "none" or rng.random() < 0.5
            if wants and rng.random() >= 0.08:
                action = {"none": "inform"}.get(eco.field_action, eco.field_action)
                ad.bulletins.append((f"SB-{eco.eco_number[4:]}", eco.eco_number, eco.title,
                                     r + float(rng.uniform(2, 15)), action))
        for key, lst in ad.instructions.items():
            lst.sort()
            ad.times[key] = [x[0] for x in lst]
        return ad

    def is_bad(self, part: str, rev: str | None) -> bool:
        return (part, rev) in self.bad


def mes_revision(ad: Adoption, product: str, part: str, t: float) -> str | None:
    lst = ad.instructions.get((product, part))
    if not lst:
        return None
    i = bisect_right(ad.times[(product, part)], t)
    return lst[i - 1][1] if i else None
