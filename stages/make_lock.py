"""Write requirements.lock: the exact installed versions of issue-titles[serve] and everything it pulls in.

    .venv/bin/python stages/make_lock.py        # run where the package is installed (the shared .venv)

The container image installs from this file, so it gets the versions the tests ran with.
"""

import re
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from packaging.requirements import Requirement

ROOT = "issue-titles"
EXTRAS = ("serve",)
LOCK = Path(__file__).with_name("requirements.lock")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure(root: str, extras: tuple[str, ...]) -> dict[str, str]:
    pinned: dict[str, str] = {}
    pending: list[tuple[str, tuple[str, ...]]] = [(root, extras)]
    seen: set[tuple[str, tuple[str, ...]]] = set()
    while pending:
        name, wanted = pending.pop()
        if (canonical(name), wanted) in seen:
            continue
        seen.add((canonical(name), wanted))
        try:
            dist = distribution(name)
        except PackageNotFoundError:
            sys.exit(f"make_lock: {name} is required but not installed; install issue-titles[serve] first")
        if canonical(name) != ROOT:
            pinned[canonical(dist.metadata["Name"])] = dist.version
        for line in dist.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in wanted] or [{"extra": ""}]
            if requirement.marker and not any(requirement.marker.evaluate(env) for env in environments):
                continue
            pending.append((requirement.name, tuple(sorted(requirement.extras))))
    return pinned


def main() -> None:
    pinned = closure(ROOT, EXTRAS)
    header = (
        "# Exact versions for the stage image: issue-titles[serve] and its dependencies, as installed where the\n"
        "# tests ran (linux x86_64, CPython 3.11). Regenerate with: python stages/make_lock.py\n"
    )
    LOCK.write_text(header + "".join(f"{name}=={version}\n" for name, version in sorted(pinned.items())))
    print(f"wrote {len(pinned)} pins to {LOCK}")


if __name__ == "__main__":
    main()
