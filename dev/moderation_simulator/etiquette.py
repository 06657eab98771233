"""What makes the simulator behave like a real, imperfect provider: per-key token buckets (429),
prepaid balance (405) and random faults (5xx, hangs, lost or resent callbacks). Pure; the caller
passes the clock."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from consumer.core.limits import TokenBucket

__all__ = ["FAULT_NAMES", "Faults", "TokenBucket"]

FAULT_NAMES = ("500", "502", "503", "504", "429", "hang", "callback_drop", "resend", "is0012")


@dataclass(slots=True)
class Faults:
    rates: dict[str, float] = field(default_factory=dict)
    hang_s: float = 30.0
    rng: random.Random = field(default_factory=lambda: random.Random(1234))

    def set(self, name: str, rate: float) -> None:
        if name not in FAULT_NAMES:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"fault rate for {name} must be within 0..1")
        self.rates[name] = rate

    def hit(self, name: str) -> bool:
        rate = self.rates.get(name, 0.0)
        return rate > 0 and self.rng.random() < rate

    def request_fault(self, codes: tuple[str, ...] = ("500", "502", "503", "504", "429")) -> str | None:
        """The fault (an HTTP status, or ``hang``) to inflict on this request, if any."""
        if self.hit("hang"):
            return "hang"
        for code in codes:
            if self.hit(code):
                return code
        return None

    def snapshot(self) -> dict[str, float]:
        return {**{n: self.rates.get(n, 0.0) for n in FAULT_NAMES}, "hang_s": self.hang_s}
