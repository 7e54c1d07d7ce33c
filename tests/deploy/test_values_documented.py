"""Every value an operator can set in the chart's values.yaml carries a `# --` description (helm-docs style), on
the key itself or on the map that holds it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "deploy" / "helm" / "scrm" / "values.yaml"
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(?P<value>.*)$")


def undocumented(text: str) -> list[str]:
    """Dotted paths of the keys with no `# --` comment on themselves or any enclosing key."""
    lines = text.splitlines()
    documented_at: list[tuple[int, str, bool]] = []  # (indent, key, documented) of the enclosing keys
    missing: list[str] = []
    for number, line in enumerate(lines):
        match = KEY.match(line)
        if match is None or line.lstrip().startswith(("#", "-")):
            continue
        indent = len(match["indent"])
        while documented_at and documented_at[-1][0] >= indent:
            documented_at.pop()
        above = number - 1
        own = False
        while above >= 0 and lines[above].strip().startswith("#"):
            own = own or lines[above].strip().startswith("# --")
            above -= 1
        inherited = any(doc for _, _, doc in documented_at)
        path = ".".join([k for _, k, _ in documented_at] + [match["key"]])
        if not (own or inherited) and match["value"].strip() not in ("",):
            missing.append(path)
        documented_at.append((indent, match["key"], own or inherited))
    return missing


def test_every_value_is_documented() -> None:
    assert undocumented(VALUES.read_text()) == []


def test_the_check_finds_an_undocumented_value() -> None:
    text = "a:\n  # -- documented\n  b: 1\n  c: 2\n# -- a map\nd:\n  e: 3\n"
    assert undocumented(text) == ["a.c"]
