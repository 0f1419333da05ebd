"""Accessibility, checked in the page: axe-core's audit, plus the basics a studio page keeps.

``audit(page)`` runs axe-core (from the npm registry, fetched with the other browser assets by
``scripts/fetch_assets.py``) on the page as it is now and returns every violation of impact
*serious* or *critical*, then the problems ``audit.js`` finds (labels, named buttons and links,
text contrast). An empty list means the page passes.
"""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

_AUDIT = (Path(__file__).parent / "audit.js").read_text()
_AXE = Path(__file__).resolve().parents[2] / "src/stagecast/web/static/vendor/axe.min.js"
_RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => {
      const where = v.nodes.map((n) => n.target.join(" ")).join(", ");
      return `axe ${v.impact} ${v.id}: ${v.help} (${where})`;
    });
}"""


async def audit(page: Page) -> list[str]:
    """Return the accessibility problems of the page as it is now."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(_AXE))
    problems: list[str] = await page.evaluate(_RUN_AXE)
    problems += await page.evaluate(_AUDIT)
    return problems
