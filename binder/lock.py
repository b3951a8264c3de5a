"""Write binder/requirements.txt: binder/requirements.in with every package pinned.

    python binder/lock.py            # resolve again and write the lock
    python binder/lock.py --check    # resolve again; exit 1 if the lock differs

pip resolves requirements.in as it would install it on an empty Python (`pip install --dry-run
--ignore-installed --report`), with this interpreter, which must be binder/runtime.txt's
version; nothing is installed. The lock pins every package of that resolution to its exact
version, and keeps the "." line (tore_nb itself, with its extras) from requirements.in.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

BINDER = Path(__file__).resolve().parent
REPO = BINDER.parent
SOURCE = BINDER / "requirements.in"
LOCK = BINDER / "requirements.txt"
HEADER = """\
# The lock of binder/requirements.in, written by `python binder/lock.py` (Python {python}):
# every package pinned to what pip resolved. Edit requirements.in, then run the script again.
"""


def runtime() -> str:
    """The Python version of binder/runtime.txt: `python-3.11` -> `3.11`."""
    return (BINDER / "runtime.txt").read_text().strip().removeprefix("python-")


def resolve() -> list[tuple[str, str]]:
    """(name, version) of every package pip would install for requirements.in, but tore_nb."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed"]
        cmd += ["--quiet", "--report", str(report), "-r", str(SOURCE)]
        subprocess.run(cmd, cwd=REPO, check=True)
        items = json.loads(report.read_text())["install"]
    pins = {(i["metadata"]["name"], i["metadata"]["version"]) for i in items}
    return sorted((n, v) for n, v in pins if n.lower().replace("_", "-") != "tore-nb")


def render(pins: list[tuple[str, str]]) -> str:
    local = [
        line
        for line in SOURCE.read_text().splitlines()
        if line.strip().startswith(".")  # the project itself: not pinned, installed from here
    ]
    body = [*local, *(f"{name}=={version}" for name, version in sorted(pins, key=_key))]
    return HEADER.format(python=runtime()) + "\n".join(body) + "\n"


def _key(pin: tuple[str, str]) -> str:
    return pin[0].lower().replace("_", "-")


def main(argv: list[str]) -> int:
    wanted = runtime()
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != wanted:
        print(f"binder/lock.py: run it with Python {wanted} (binder/runtime.txt), not {here}")
        return 2
    text = render(resolve())
    if "--check" in argv:
        if LOCK.read_text() != text:
            print("binder/requirements.txt is out of date: run python binder/lock.py")
            return 1
        print("binder/requirements.txt is up to date")
        return 0
    LOCK.write_text(text)
    print(f"binder/requirements.txt: {text.count('==')} packages pinned")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
