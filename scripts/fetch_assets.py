"""Fetch the browser dependencies pinned in web/package-lock.json from the npm registry.

No Node.js needed: each tarball is downloaded from the registry, checked against the lockfile's
sha512 integrity, and the files the pages use are copied to src/stagecast/web/static/vendor/
(which is not committed). Re-running with nothing changed does no network work.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "web" / "package-lock.json"
CACHE = ROOT / ".cache" / "npm"
VENDOR = ROOT / "src" / "stagecast" / "web" / "static" / "vendor"
REGISTRY = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org/").rstrip("/")

# Which files of each package the pages load, and under which name.
WANTED = {
    "hls.js": {"package/dist/hls.min.js": "hls.min.js"},
    "uplot": {
        "package/dist/uPlot.iife.min.js": "uplot.min.js",
        "package/dist/uPlot.min.css": "uplot.min.css",
    },
    # The browser tests' accessibility audit (tests/e2e/audit.py); no page loads it.
    "axe-core": {"package/axe.min.js": "axe.min.js"},
}


def _tarball(name: str, version: str, integrity: str) -> bytes:
    CACHE.mkdir(parents=True, exist_ok=True)
    cached = CACHE / f"{name}-{version}.tgz"
    algo, _, expected = integrity.partition("-")
    if cached.exists():
        data = cached.read_bytes()
    else:
        url = f"{REGISTRY}/{name}/-/{name.split('/')[-1]}-{version}.tgz"
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - fixed https URL
            data = response.read()
    digest = base64.b64encode(hashlib.new(algo, data).digest()).decode()
    if digest != expected:
        sys.exit(f"fetch_assets: {name}@{version} does not match its lockfile integrity")
    cached.write_bytes(data)
    return data


def main() -> None:
    """Download, verify and unpack every wanted file; skip what is already in place."""
    lock = json.loads(LOCK.read_text())
    VENDOR.mkdir(parents=True, exist_ok=True)
    for name, files in WANTED.items():
        entry = lock["packages"][f"node_modules/{name}"]
        stamp = VENDOR / f".{name}-{entry['version']}"
        if stamp.exists() and all((VENDOR / out).exists() for out in files.values()):
            continue
        data = _tarball(name, entry["version"], entry["integrity"])
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member, out in files.items():
                extracted = archive.extractfile(member)
                if extracted is None:
                    sys.exit(f"fetch_assets: {member} missing from {name}@{entry['version']}")
                (VENDOR / out).write_bytes(extracted.read())
        for old in VENDOR.glob(f".{name}-*"):
            old.unlink()
        stamp.touch()
        print(f"fetch_assets: {name}@{entry['version']}")


if __name__ == "__main__":
    main()
