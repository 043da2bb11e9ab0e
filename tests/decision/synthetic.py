"""A seeded synthetic purchase history in the CDNOW format, for fast training in tests.

Customers make a first purchase in the first quarter of 1997, then buy at a personal
daily rate until a personal drop-out day, so frequency and recency predict a repeat
purchase as they do in the real CDNOW data.
"""

import datetime as dt
import random
from pathlib import Path

START = dt.date(1997, 1, 1)
END = dt.date(1998, 6, 30)
_DAILY_RATES = (0.003, 0.01, 0.03)


def write_synthetic_cdnow(path: Path, customers: int = 800, seed: int = 11) -> Path:
    """Write a CDNOW-format file with a header line; return path."""
    rng = random.Random(seed)
    span_days = (END - START).days
    lines = ["customer_id date number_of_cds dollar_value"]
    for number in range(1, customers + 1):
        day = rng.randrange(90)
        rate = rng.choice(_DAILY_RATES)
        drop_out = day + int(rng.expovariate(1 / 300))
        mean_amount = rng.uniform(10, 60)
        while day <= min(span_days, drop_out):
            date = START + dt.timedelta(days=day)
            quantity = rng.randint(1, 4)
            amount = max(0.0, rng.gauss(mean_amount, 5))
            lines.append(f"{number:05d} {date:%Y%m%d} {quantity} {amount:.2f}")
            day += 1 + int(rng.expovariate(rate))
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path
