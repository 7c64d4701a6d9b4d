"""One unit's life: built by MES to the work instructions in force, shipped, installed, serviced,
retrofitted and sending telemetry. Each unit draws from its own keyed streams."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from ._engineering import Adoption, Engineering, mes_revision
from ._random import stream
from ._schedule import PlannedUnit

STATIONS = [("ST-10", "kitting"), ("ST-20", "assembly"), ("ST-30", "test"), ("ST-40", "packing")]
QUALITY = [("flow_m3_h", 40.0, 36.0, 44.0), ("pressure_bar", 6.0, 5.5, 6.5), ("noise_db", 72.0, 60.0, 80.0)]
SYMPTOMS = ["VIB-HIGH", "TEMP-HIGH", "LEAK", "NOISE", "NO-START", "PRESSURE-LOW"]


@dataclass
class UnitLife:
    unit: dict
    as_built: list[tuple]
    production_events: list[tuple]
    quality_records: list[tuple]
    installation: dict | None
    service_events: list[dict] = field(default_factory=list)
    warranty_claims: list[dict] = field(default_factory=list)
    telemetry: tuple | None = None  # (installed_at, product, connected, factor, rates, offset)


class UnitFactory:
    def __init__(self, seed: int, eng: Engineering, ad: Adoption, horizon: float, n_customers: int,
                 iso, sensors):
        self.seed, self.eng, self.ad, self.H = seed, eng, ad, horizon
        self.iso, self.sensors, self.n_customers = iso, sensors, n_customers
        self._structures: dict = {}
        self._epochs = {}
        for (product, _), lst in ad.instructions.items():
            self._epochs.setdefault(product, []).extend(x[0] for x in lst)
        for v in self._epochs.values():
            v.sort()
        self.bulletins = sorted(
            (at, no, eco, action) for no, eco, _, at, action in ad.bulletins if action in ("retrofit", "inspect")
        )
        self.ecos = {e.eco_number: e for e in eng.ecos}
        # part -> the bulletins whose ECO removes it: a unit only ever reacts to bulletins about
        # parts it holds, and there are thousands of bulletins at 100,000 units.
        self.bulletins_by_part: dict[str, list] = {}
        for b in self.bulletins:
            for part in {rp for rp, rr, _, _ in self.ecos[b[2]].swaps if rr is not None}:
                self.bulletins_by_part.setdefault(part, []).append(b)

    # -- as built --------------------------------------------------------------------------------
    def structure(self, product: str, t: float) -> list[tuple[str, str, float, int]]:
        from bisect import bisect_right

        epoch = bisect_right(self._epochs.get(product, []), t)
        key = (product, epoch, self.eng.released_revision(product, t))
        if key in self._structures:
            return self._structures[key]

        def rev(part):
            return mes_revision(self.ad, product, part, t) or self.eng.released_revision(part, t)

        acc: dict[tuple[str, str], list] = {}
        stack = [(product, rev(product), 1.0, 0)]
        while stack:
            part, r, qty, level = stack.pop()
            if level:
                slot = acc.setdefault((part, r), [0.0, level])
                slot[0] += qty
                slot[1] = max(slot[1], level)
            for _, child, q in self.eng.bom.get((part, r), []):
                stack.append((child, rev(child), qty * q, level + 1))
        out = sorted((p, r, round(q, 6), lvl) for (p, r), (q, lvl) in acc.items())
        self._structures[key] = out
        return out

    def life(self, u: PlannedUnit, wo_number: str) -> UnitLife:
        H, iso, eng = self.H, self.iso, self.eng
        rng = stream(self.seed, "unit", u.serial_number)
        t0 = u.start
        duration = float(rng.uniform(1, 4))
        completed = t0 + duration
        scrapped_at = t0 + float(rng.uniform(0.2, duration)) if rng.random() < 0.015 else None
        shipped = completed + float(rng.uniform(2, 12))
        installed = shipped + float(rng.uniform(3, 20))
        product_rev = mes_revision(self.ad, u.product, u.product, t0) or eng.released_revision(u.product, t0)
        if scrapped_at is not None and scrapped_at <= H:
            status, end = "scrapped", scrapped_at
        elif completed > H:
            status, end = "in_build", H
        elif shipped > H:
            status, end = "completed", H
        else:
            status, end = "shipped", H
        line = {"P-100": "L1", "P-200": "L2"}.get(u.product, "L3")
        line = line if rng.random() < 0.8 else "L4"
        unit = {
            "serial_number": u.serial_number, "product_part_number": u.product,
            "product_revision": product_rev, "work_order_number": wo_number, "line_id": line,
            "build_started_at": iso(t0),
            "build_completed_at": iso(completed) if status in ("completed", "shipped") else None,
            "status": status, "shipped_at": iso(shipped) if status == "shipped" else None,
        }
        structure = self.structure(u.product, t0)
        max_level = max((s[3] for s in structure), default=1)
        rows = []
        holdings: dict[str, dict[str, float]] = {}
        deviation = rng.random()
        target = None
        candidates = [s for s in structure if not eng.cat.parts[s[0]].is_tracked
                      and eng.cat.parts[s[0]].part_type == "component"]
        if deviation < 0.025 and candidates:
            target = candidates[int(rng.integers(len(candidates)))]
        for part, r, qty, level in structure:
            at = t0 + duration * (0.05 + 0.8 * (1 - level / (max_level + 1)) + float(rng.uniform(0, 0.1)))
            if at > end:
                continue
            p = eng.cat.parts[part]
            sub = False
            lot = None
            if target and part == target[0]:
                older = [x.revision for x in eng.revisions[part]
                         if x.release is not None and x.release <= t0 and x.revision != r]
                if deviation < 0.01:  # approved substitute: an older revision, or the same one
                    r, sub, lot = (older[-1] if older else r), True, f"LOT-{int(rng.integers(1e5)):05d}"
                elif deviation < 0.015:
                    continue  # missing on the line
                elif deviation < 0.02:
                    qty = qty + 1 if qty <= 1 else qty - 1
                elif older and qty >= 2:  # a split: one piece of an older revision
                    rows.append((u.serial_number, part, older[-1], 1.0, f"LOT-{int(rng.integers(1e5)):05d}",
                                 iso(at), 1))
                    holdings.setdefault(part, {})[older[-1]] = 1.0
                    qty -= 1
            if p.is_tracked and p.unit_of_measure == "ea" and not sub and float(qty).is_integer():
                for k in range(int(qty)):
                    rows.append((u.serial_number, part, r, 1.0, f"{part}-{u.index:07d}-{k + 1}", iso(at), 0))
            else:
                rows.append((u.serial_number, part, r, float(qty), lot or "-", iso(at), int(sub)))
            holdings.setdefault(part, {})
            holdings[part][r] = holdings[part].get(r, 0.0) + float(qty)

        events, quality = [], []
        fails_test = rng.random() < 0.04
        k = 0
        for i, (station, op) in enumerate(STATIONS):
            ts = t0 + duration * (i / len(STATIONS))
            te = t0 + duration * ((i + 0.8) / len(STATIONS))
            seq = [("start", ts)]
            if op == "test" and fails_test:
                seq += [("fail", ts + 0.05), ("rework", ts + 0.1)]
            seq.append(("complete", te))
            for etype, at in seq:
                if at <= end:
                    k += 1
                    events.append((f"PE-{u.serial_number}-{k:02d}", u.serial_number, station, op, etype, iso(at)))
            if op == "test" and te <= end:
                for j, (ch, nominal, lo, hi) in enumerate(QUALITY):
                    v = round(float(rng.normal(nominal, (hi - lo) / 7)), 3)
                    quality.append((f"QR-{u.serial_number}-{j + 1}", u.serial_number, ch, v, lo, hi,
                                    "pass" if lo <= v <= hi else "fail", iso(te)))
        life = UnitLife(unit, rows, events, quality, None)
        if status == "shipped" and installed <= H:
            cust = int(rng.integers(self.n_customers))
            life.installation = {"serial_number": u.serial_number, "customer_id": f"CU-{cust + 1:05d}",
                                 "site": f"Site {cust + 1:05d}-{int(rng.integers(1, 4))}",
                                 "installed_at": iso(installed)}
            self._service(u, life, holdings, installed, shipped)
            connected = rng.random() < 0.9
            degrading = rng.random() < 0.15
            factors, rates = [], []
            for _, _, typical, warning, _ in self.sensors:
                factors.append(float(rng.normal(1.0, 0.04)))
                days_to_warn = float(rng.uniform(60, 260)) if degrading else float(rng.uniform(1500, 5000))
                rates.append((warning - typical) / days_to_warn)
            bad_bearing = any(eng.is_bad(x, r) for x, revs in holdings.items() for r in revs)
            life.telemetry = (installed, u.product, connected, factors, rates, 0.8 if bad_bearing else 0.0)
        return life

    # -- the field -------------------------------------------------------------------------------
    def _service(self, u: PlannedUnit, life: UnitLife, holdings, installed: float, shipped: float) -> None:
        H, eng, iso, serial = self.H, self.eng, self.iso, u.serial_number
        heap: list = []
        seq = 0

        def push(t, kind, payload):
            nonlocal seq
            seq += 1
            heapq.heappush(heap, (t, seq, kind, payload))

        mrng = stream(self.seed, "maint", serial)
        push(installed + float(mrng.uniform(80, 140)), "maintenance", None)
        fail_streams = {}
        for part in sorted(holdings):
            p = eng.cat.parts[part]
            if p.is_wear and p.base_failure_per_day:
                frng = stream(self.seed, "fail", serial, part)
                qty0 = max(1.0, sum(holdings[part].values()))
                max_rate = p.base_failure_per_day * 6 * qty0
                fail_streams[part] = (frng, max_rate)
                push(installed + float(frng.exponential(1 / max_rate)), "failure?", part)
        relevant = sorted({b for part in holdings for b in self.bulletins_by_part.get(part, ())})
        for at, no, eco, action in relevant:
            push(max(at, installed), "bulletin", (no, eco, action))
        raw_events = []
        while heap:
            t, _, kind, payload = heapq.heappop(heap)
            if t > H:
                break
            if kind == "maintenance":
                raw_events.append(dict(event_type="maintenance", occurred=t, closes=t + float(mrng.uniform(0.1, 1)),
                                       notes="Scheduled maintenance"))
                push(t + float(mrng.uniform(80, 140)), "maintenance", None)
            elif kind == "failure?":
                part = payload
                frng, max_rate = fail_streams[part]
                p = eng.cat.parts[part]
                rate = sum(q * p.base_failure_per_day * (6 if eng.is_bad(part, r) else 1)
                           for r, q in holdings.get(part, {}).items())
                if frng.random() < min(1.0, rate / max_rate):
                    ev = dict(event_type="failure", occurred=t, closes=t + float(frng.uniform(0.3, 8)),
                              failed_part_number=part, symptom_code=str(frng.choice(SYMPTOMS)),
                              notes=f"{p.name} failed in operation")
                    if frng.random() < 0.7:
                        held = sorted(holdings[part], key=lambda r: self._released(part, r))
                        removed = next((r for r in held if eng.is_bad(part, r)), held[0])
                        new = eng.released_revision(part, t)
                        unknown = frng.random() < 0.1
                        if unknown:
                            removed = held[0]
                        ev.update(self._swap(holdings, part, removed, part, new, serial, t, frng))
                        if unknown:
                            ev["removed_revision"] = None
                    raw_events.append(ev)
                push(t + float(frng.exponential(1 / max_rate)), "failure?", part)
            elif kind == "bulletin":
                no, eco_number, action = payload
                eco = self.ecos[eco_number]
                brng = stream(self.seed, "bulletin", serial, eco_number)
                if self._within(u, eco) or not self._holds_any(holdings, eco):
                    continue
                if action == "retrofit" and brng.random() < 0.75:
                    push(t + float(brng.uniform(7, 90)), "retrofit", eco_number)
                elif action == "inspect" and brng.random() < 0.6:
                    push(t + float(brng.uniform(5, 60)), "inspection", (eco_number, no))
            elif kind == "inspection":
                eco_number, no = payload
                raw_events.append(dict(event_type="inspection", occurred=t, closes=t + 0.2, eco_number=eco_number,
                                       notes=f"Inspected per {no}"))
            elif kind == "retrofit":
                eco = self.ecos[payload]
                rrng = stream(self.seed, "retrofit", serial, eco.eco_number)
                swaps = [s for s in eco.swaps if s[1] in holdings.get(s[0], {})]
                if len(swaps) > 1 and rrng.random() < 0.15:
                    swaps = swaps[:-1]  # partial retrofit: one part not done
                for rp, rr, ip, ir in swaps:
                    ev = dict(event_type="retrofit", occurred=t, closes=t + float(rrng.uniform(0.1, 1)),
                              eco_number=eco.eco_number, notes=f"Retrofit per {eco.eco_number}")
                    # A technician may not record the revision removed; only where the thread's
                    # reading (earliest-released held revision) names the same one.
                    unrecorded = rrng.random() < 0.05 and rr == self._earliest(holdings, rp, rr)
                    ev.update(self._swap(holdings, rp, rr, ip, ir, serial, t, rrng))
                    if unrecorded:
                        ev["removed_revision"] = None
                    raw_events.append(ev)
                    t += 0.01
        raw_events.sort(key=lambda e: e["occurred"])
        crng = stream(self.seed, "claims", serial)
        for k, ev in enumerate(raw_events, start=1):
            event_id = f"SE-{serial}-{k:03d}"
            closes = ev.pop("closes")
            occurred = ev.pop("occurred")
            row = {"event_id": event_id, "serial_number": serial, "event_type": ev["event_type"],
                   "occurred_at": iso(occurred), "closed_at": iso(closes) if closes <= H else None}
            for col in ("failed_part_number", "symptom_code", "removed_part_number", "removed_revision",
                        "installed_part_number", "installed_revision", "installed_component_serial",
                        "eco_number", "notes"):
                row[col] = ev.get(col)
            life.service_events.append(row)
            if ev["event_type"] == "failure" and occurred - shipped < 365 and crng.random() < 0.7:
                claimed = occurred + float(crng.uniform(1, 10))
                if claimed <= H:
                    status = "open" if H - claimed < 14 else ("approved" if crng.random() < 0.8 else "rejected")
                    life.warranty_claims.append({
                        "claim_id": f"WC-{serial}-{k:03d}", "serial_number": serial, "event_id": event_id,
                        "claimed_at": iso(claimed), "amount": round(float(crng.uniform(150, 4500)), 2),
                        "currency": "EUR", "status": status})

    def _released(self, part, rev):
        for r in self.eng.revisions[part]:
            if r.revision == rev:
                return r.release if r.release is not None else 1e9
        return 1e9

    def _earliest(self, holdings, part, default):
        held = [r for r, q in holdings.get(part, {}).items() if q > 0]
        return min(held, key=lambda r: self._released(part, r)) if held else default

    def _swap(self, holdings, rp, rr, ip, ir, serial, t, rng) -> dict:
        revs = holdings.setdefault(rp, {})
        if revs.get(rr, 0) > 0:
            revs[rr] -= 1
            if revs[rr] <= 0:
                del revs[rr]
        inst = holdings.setdefault(ip, {})
        inst[ir] = inst.get(ir, 0) + 1
        return {"removed_part_number": rp, "removed_revision": rr, "installed_part_number": ip,
                "installed_revision": ir, "installed_component_serial": f"{ip}-F{int(rng.integers(1e6)):06d}"}

    def _within(self, u: PlannedUnit, eco) -> bool:
        if eco.effectivity_type == "date":
            return int(u.start) >= eco.effective_day
        prefix = eco.effective_serial.rsplit("-", 1)[0]
        return u.serial_number.rsplit("-", 1)[0] == prefix and u.serial_number >= eco.effective_serial

    @staticmethod
    def _holds_any(holdings, eco) -> bool:
        return any(rr is not None and holdings.get(rp, {}).get(rr, 0) > 0 for rp, rr, _, _ in eco.swaps)
