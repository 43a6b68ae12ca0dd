"""The README's console screenshots, taken from a running ``eventguard demo``.

Starts the demo on free ports, signs in through its one-time link in headless Chromium
(Debian's, as in the browser tests), lets the steady load run for ``--settle`` seconds, and
saves ``docs/console-fleet.png`` and ``docs/console-quarantine.png``. Then stops the demo.

Run: ``.venv/bin/python scripts/console_screenshots.py`` (needs scripts/browser.sh once).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from pathlib import Path

from playwright.async_api import async_playwright

ROOT = Path(__file__).resolve().parents[1]
_LINK = re.compile(r"(http://\S+/signin/link\?code=\S+)")


async def _link(stdout: asyncio.StreamReader) -> str:
    async with asyncio.timeout(60):
        while line := (await stdout.readline()).decode():
            found = _LINK.search(line)
            if found:
                return found.group(1)
    raise RuntimeError("the demo ended without printing its sign-in link")


async def main(out: Path, settle: float) -> None:
    env = {**os.environ, "EVENTGUARD_CONSOLE__PORT": "0", "EVENTGUARD_LOG_LEVEL": "WARNING"}
    demo = await asyncio.create_subprocess_exec(
        str(ROOT / ".venv" / "bin" / "eventguard"), "demo", "--port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip
    try:
        if demo.stdout is None:
            raise RuntimeError("no pipe to the demo's output")
        link = await _link(demo.stdout)
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path="/usr/bin/chromium", args=["--no-sandbox"]
            )
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(link)
            await asyncio.sleep(settle)
            for name in ("fleet", "quarantine"):
                await page.goto(link.split("/signin")[0] + f"/{name}")
                await page.wait_for_load_state("networkidle")
                await page.screenshot(path=out / f"console-{name}.png", full_page=True)
                print(f"wrote {out / f'console-{name}.png'}")
            await browser.close()
    finally:
        demo.send_signal(signal.SIGINT)
        await demo.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--settle", type=float, default=30.0, help="seconds of steady load first")
    args = parser.parse_args()
    asyncio.run(main(args.out, args.settle))
    sys.exit(0)
