"""What every Dashboard page is checked for in the browser: no sideways scrolling at a
phone's width, and basic accessibility (labels, names, landmarks, headings, contrast)."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Page

__all__ = ["PHONE", "accessibility_problems", "page_width"]

PHONE = {"width": 390, "height": 844}

# Each problem is a line of text; the page passes with none. Contrast follows WCAG 2.1 AA:
# 4.5:1 for text, 3:1 for large text (24 px, or 18.66 px bold), over the nearest opaque
# background (every background of the Dashboard is a plain colour).
_AUDIT = (Path(__file__).parent / "audit.js").read_text()


async def accessibility_problems(page: Page) -> list[str]:
    problems: list[str] = await page.evaluate(_AUDIT)
    return problems


async def page_width(page: Page) -> int:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width
