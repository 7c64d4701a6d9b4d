"""When units are started: a keyed daily draw, so the schedule past the horizon is known too
(serial effectivity names a serial that may not exist yet)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from ._random import stream


@dataclass(frozen=True)
class PlannedUnit:
    serial_number: str
    product: str
    start: float  # days from the simulation start
    index: int  # order among all units


class UnitSchedule:
    def __init__(self, seed: int, start: date, units_per_day: float, products, weights):
        self.seed, self.start, self.rate = seed, start, units_per_day
        self.products = products  # [(part_number, name, prefix)]
        self.weights = weights
        self.days: list[list[PlannedUnit]] = []
        self.counters = {p[0]: 0 for p in products}
        self.by_serial: dict[str, PlannedUnit] = {}
        self.total = 0

    def day_text(self, day: float) -> str:
        return (self.start + timedelta(days=int(day))).isoformat()

    def ensure(self, day: int) -> None:
        while len(self.days) <= day:
            d = len(self.days)
            rng = stream(self.seed, "units-day", d)
            n = int(rng.poisson(self.rate))
            todays = []
            for t in sorted(rng.uniform(0.25, 0.75, size=n)):
                k = int(rng.choice(len(self.products), p=self.weights))
                product, _, prefix = self.products[k]
                self.counters[product] += 1
                serial = f"{prefix}-{self.counters[product]:06d}"
                u = PlannedUnit(serial, product, d + float(t), self.total)
                self.total += 1
                todays.append(u)
                self.by_serial[serial] = u
            self.days.append(todays)

    def units_until(self, horizon: float):
        self.ensure(int(horizon) + 1)
        for day in self.days[: int(horizon) + 1]:
            for u in day:
                if u.start <= horizon:
                    yield u

    def serial_started_after(self, product: str, t: float) -> str:
        day = int(t)
        while True:
            self.ensure(day)
            for u in self.days[day]:
                if u.product == product and u.start >= t:
                    return u.serial_number
            day += 1

    def start_of(self, serial: str | None) -> float | None:
        u = self.by_serial.get(serial) if serial else None
        return u.start if u else None
