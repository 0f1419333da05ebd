"""A HyperLogLog distinct counter: 16 KiB however many ids, like Redis's ``PFADD``/``PFCOUNT``.

With 2^14 registers the standard error is 0.81 %; below ~40,000 ids the linear-counting
correction makes small counts practically exact (3 ids count as 3).
"""

from __future__ import annotations

import hashlib
import math

_P = 14
_M = 1 << _P
_ALPHA = 0.7213 / (1 + 1.079 / _M)
_REST = 64 - _P


class HyperLogLog:
    """Estimate how many distinct strings were added."""

    __slots__ = ("_inverse_sum", "_registers", "_zeros")

    def __init__(self) -> None:
        self._registers = bytearray(_M)
        # Kept up to date by ``add`` so ``count`` is O(1): Σ 2^-register and the empty registers.
        self._inverse_sum = float(_M)
        self._zeros = _M

    def add(self, item: str) -> None:
        """Count ``item`` (adding it again changes nothing)."""
        value = int.from_bytes(hashlib.blake2b(item.encode(), digest_size=8).digest(), "big")
        index = value >> _REST
        rest = value & ((1 << _REST) - 1)
        rank = _REST - rest.bit_length() + 1
        old = self._registers[index]
        if rank > old:
            self._registers[index] = rank
            self._inverse_sum += 2.0**-rank - 2.0**-old
            self._zeros -= old == 0

    def count(self) -> int:
        """Return the estimated number of distinct items added."""
        zeros = self._zeros
        if zeros == _M:
            return 0
        estimate = _ALPHA * _M * _M / self._inverse_sum
        if estimate <= 2.5 * _M and zeros:
            estimate = _M * math.log(_M / zeros)
        return round(estimate)
