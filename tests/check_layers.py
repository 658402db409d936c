#!/usr/bin/python3
"""Checks that dependencies point one way (DESIGN.md "Where things live"):

    dataplane/   includes only dataplane/  (dataplane/api/ only dataplane/api/)
    drivers/     includes only drivers/ and dataplane/api/
    control/     includes only control/, dataplane/api/ and drivers/api/

tests/, bench/ and scripts/ may use anything. Prints every violation with file and line and
exits 1 if there is any. `check_layers.py --self-test` proves the check catches one.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

INCLUDE = re.compile(r'^\s*#\s*include\s*"((?:dataplane|drivers|control)/[^"]+)"')
ALLOWED = {
    "dataplane/api/": ("dataplane/api/",),
    "dataplane/": ("dataplane/",),
    "drivers/": ("drivers/", "dataplane/api/"),
    "control/": ("control/", "dataplane/api/", "drivers/api/"),
}


def violations(root: Path) -> list[str]:
    out = []
    for layer in ("dataplane", "drivers", "control"):
        for f in sorted((root / layer).rglob("*")):
            if f.suffix not in (".hpp", ".cpp", ".h", ".cc") or not f.is_file():
                continue
            rel = f.relative_to(root).as_posix()
            rule = next(v for k, v in ALLOWED.items() if rel.startswith(k))
            for n, line in enumerate(f.read_text(errors="replace").splitlines(), start=1):
                m = INCLUDE.match(line)
                if m and not m.group(1).startswith(rule):
                    out.append(f"{rel}:{n}: includes {m.group(1)} (allowed: {', '.join(rule)})")
    return out


def self_test() -> int:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        for sub, text in {
            "dataplane/api/a.hpp": '#include "dataplane/api/b.hpp"\n',
            "dataplane/worker/w.cpp": '#include "dataplane/parse/p.hpp"\n',
            "drivers/ports/p.cpp": '#include "dataplane/api/a.hpp"\n#include "drivers/api/x.hpp"\n',
            "control/app/a.cpp": '#include "control/x/y.hpp"\n#include "dataplane/proto/proto.hpp"\n',
            "dataplane/api/c.hpp": '#include "dataplane/flow/f.hpp"\n',
            "drivers/api/d.hpp": ' #  include "control/config/config.hpp"\n',
        }.items():
            (root / sub).parent.mkdir(parents=True, exist_ok=True)
            (root / sub).write_text(text)
        got = violations(root)
        want = ["control/app/a.cpp:2", "dataplane/api/c.hpp:1", "drivers/api/d.hpp:1"]
        if sorted(g.split(": ")[0] for g in got) != want:
            print(f"self-test failed: expected violations at {want}, got {got}")
            return 1
    print("self-test: the check finds each planted violation and nothing else")
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--self-test"]:
        return self_test()
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    bad = violations(root)
    for b in bad:
        print(b)
    print(f"layering: {len(bad)} violation(s)" if bad else "layering: dependencies point one way")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
