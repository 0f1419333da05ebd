"""Accessible basics, checked in the page: labels, named buttons and links, text contrast.

Not a full WCAG audit: the rules a studio page must never break. ``audit(page)`` returns the
problems found (empty when the page passes).
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

_AUDIT = (Path(__file__).parent / "audit.js").read_text()


async def audit(page: Page) -> list[str]:
    """Return the accessibility problems of the page as it is now."""
    problems: list[str] = await page.evaluate(_AUDIT)
    return problems
