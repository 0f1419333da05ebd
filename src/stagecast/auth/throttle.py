"""Sign-in throttling: a limit per address, and a growing delay per user that spares others.

- Per address (its /64 for IPv6): ``login_attempts`` sign-in attempts per
  ``login_window_seconds``, whatever the usernames; past it, 429.
- Per user: wrong passwords are counted across addresses (the count lapses after a window
  without one). Past ``login_attempts`` of them, every further one doubles a delay — 1 s,
  2 s, 4 s … up to the window — that each address which already failed for this user must
  wait before trying them again (429 with ``Retry-After``). An address that has not failed for
  the user is not delayed, so the owner signing in from elsewhere is never locked out by
  someone guessing; a guesser gets one try per fresh address and then waits like the rest.

A right password clears the user's count and the address's failures for that user.
"""

from __future__ import annotations

from stagecast.config import Settings
from stagecast.errors import TooManyRequests
from stagecast.ratelimit import RateLimiter, address_bucket

LIMITED = "too many sign-in attempts; try again later"


class SignInThrottle:
    """Decide whether a sign-in attempt may be checked, and count its outcome."""

    def __init__(self, limiter: RateLimiter, settings: Settings) -> None:
        self.limiter = limiter
        self.free = settings.login_attempts
        self.window = settings.login_window_seconds

    def delay(self, failures: int) -> float:
        """Return the wait imposed after ``failures`` wrong passwords for one user (seconds)."""
        if failures < self.free:
            return 0.0
        return float(min(self.window, 2.0 ** min(failures - self.free, 62)))

    async def check_address(self, host: str) -> None:
        """Count an attempt from ``host``; raise TooManyRequests past its limit."""
        key = f"login:ip:{address_bucket(host)}"
        wait = await self.limiter.hit(key, self.free, self.window)
        if wait is not None:
            raise TooManyRequests(LIMITED, retry_after=wait)

    async def check(self, username: str, host: str) -> None:
        """Count the attempt of ``host`` for ``username``; raise TooManyRequests if it waits."""
        await self.check_address(host)
        failed_here, _ = await self.limiter.strikes(self._pair(username, host))
        if not failed_here:
            return
        failures, since = await self.limiter.strikes(self._user(username))
        wait = self.delay(failures) - since
        if wait > 0:
            raise TooManyRequests(LIMITED, retry_after=wait)

    async def failed(self, username: str, host: str) -> None:
        """Count a wrong password of ``host`` for ``username``."""
        await self.limiter.strike(self._user(username), self.window)
        await self.limiter.strike(self._pair(username, host), self.window)

    async def succeeded(self, username: str, host: str) -> None:
        """Forget the user's failures (the owner is in) and this address's for them."""
        await self.limiter.reset(self._user(username))
        await self.limiter.reset(self._pair(username, host))

    @staticmethod
    def _user(username: str) -> str:
        return f"login:user:{username.lower()}"

    @staticmethod
    def _pair(username: str, host: str) -> str:
        return f"login:user:{username.lower()}:{address_bucket(host)}"
