"""The one retry delay: exponential backoff with jitter.

`backoff(attempt, base=, cap=)` is `base * 2**attempt`, capped, times a random factor
between 0.5 and 1.5 so that clients that failed together do not retry together. The
extractor, the live relay and the download relay each choose their own base and cap;
none of them sleeps here.
"""

from __future__ import annotations

import random


def backoff(attempt: int, *, base: float, cap: float) -> float:
    """Seconds to wait before retry number `attempt + 1` (attempt counts from 0)."""
    return float(min(cap, base * 2**attempt) * random.uniform(0.5, 1.5))
