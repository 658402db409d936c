#!/usr/bin/python3
"""Count individual test cases across meson test runs.

    count_results.py clean DIR[,LOGBASE]...         remove result files a previous run left behind
    count_results.py count LABEL=DIR[,LOGBASE]...   print failed cases, a line per run, then the total
    count_results.py targets DIR SUITE...           the ninja targets the tests of those suites need

LOGBASE is the --logbase a `meson test` run was given (default testlog), so several runs of
one build directory are counted apart. Meson's LOGBASE.json is the list of test programs and
their verdicts. A program's cases come
from the JUnit XML that meson builds (it folds in GoogleTest's XML for protocol 'gtest') or,
for programs that write their own JUnit file (pytest --junitxml=PATH), from that file. A
program with no per-case results counts as one case. A program that exits non-zero although
all its cases passed (a sanitizer report at exit, a crash in teardown, a timeout) adds one
failed case, so a failing run can never add up to "0 failed".

The last line printed is "N passed, N failed" (", N skipped" appended when any were skipped).
Exit status: 0 only when nothing failed, nothing was skipped and at least one case ran.
"""

import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

PASSING = {"OK", "EXPECTEDFAIL"}
SKIPPING = {"SKIP"}


def junitxml_path(command):
    for arg in command or []:
        if arg.startswith("--junitxml="):
            return arg.split("=", 1)[1]
    return None


def split_spec(spec):
    """DIR[,LOGBASE] -> (DIR, LOGBASE)."""
    build_dir, _, logbase = spec.partition(",")
    return build_dir, logbase or "testlog"


def clean(spec):
    """Deletes what a crashed run could leave stale: meson's logs and per-test XML files."""
    build_dir, logbase = split_spec(spec)
    logs = os.path.join(build_dir, "meson-logs")
    for name in (logbase + ".json", logbase + ".junit.xml", logbase + ".txt"):
        try:
            os.unlink(os.path.join(logs, name))
        except FileNotFoundError:
            pass
    try:
        out = subprocess.run(["meson", "introspect", "--tests", build_dir], check=True,
                             capture_output=True, text=True).stdout
        tests = json.loads(out)
    except (subprocess.CalledProcessError, json.JSONDecodeError, FileNotFoundError):
        return
    for t in tests:
        stale = []
        if t.get("protocol") == "gtest":
            # meson passes --gtest_output=xml:NAME.xml relative to the test's working dir and
            # reads it back even when the program crashed before writing a new one.
            stale.append(os.path.join(t.get("workdir") or build_dir, t["name"] + ".xml"))
        path = junitxml_path(t.get("cmd", []))
        if path:
            stale.append(path)
        for p in stale:
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass


def targets(build_dir, suites):
    """Relative output paths of the targets that tests in suites depend on, so a build dir
    used for some suites only (the sanitizer build) need not build everything."""
    def introspect(what):
        return json.loads(subprocess.run(["meson", "introspect", what, build_dir], check=True,
                                         capture_output=True, text=True).stdout)
    files = {t["id"]: t["filename"] for t in introspect("--targets")}
    out = []
    for t in introspect("--tests"):
        if not any(s.rpartition(":")[2] in suites for s in t.get("suite", [])):
            continue
        for dep in t.get("depends", []):
            for f in files.get(dep, []):
                rel = os.path.relpath(f, build_dir)
                if rel not in out:
                    out.append(rel)
    return out


SANITIZER_REPORT = re.compile(r"ERROR: \w+Sanitizer|runtime error:")


def sanitizer_excerpt(text, lines=24):
    """The head of the first sanitizer report in text (meson prints only a log's last 100
    lines, where an ASan report has its shadow-byte legend, not its stack)."""
    out = text.splitlines()
    for i, line in enumerate(out):
        if SANITIZER_REPORT.search(line):
            end = i + 1
            while end < len(out) and end < i + lines and not out[end].startswith("Shadow bytes"):
                end += 1
            return out[i:end]
    return []


def case_verdict(case):
    """'passed', 'failed' or 'skipped' for one JUnit <testcase>."""
    if case.find("failure") is not None or case.find("error") is not None:
        return "failed"
    if case.find("skipped") is not None or case.get("status") == "notrun":
        return "skipped"
    return "passed"


def failure_excerpt(case, lines=4, width=300):
    """The first lines of a failed case's message, so a CI log's tail says why it failed
    (meson's own log is not kept there)."""
    el = case.find("failure")
    if el is None:
        el = case.find("error")
    if el is None:
        return []
    text = (el.get("message") or "").strip() or (el.text or "").strip()
    out = [line[:width] for line in text.splitlines() if line.strip()]
    return out[:lines]


def cases_of(suites):
    for suite in suites:
        for case in suite.iter("testcase"):
            name = case.get("name", "?")
            cls = case.get("classname")
            yield (f"{cls}.{name}" if cls else name), case_verdict(case), failure_excerpt(case)


def count_run(spec):
    """Returns (passed, failed, skipped, [failed or skipped case names])."""
    build_dir, logbase = split_spec(spec)
    logs = os.path.join(build_dir, "meson-logs")
    passed = failed = skipped = 0
    bad = []
    try:
        with open(os.path.join(logs, logbase + ".json")) as f:
            programs = [json.loads(line) for line in f if line.strip()]
    except (FileNotFoundError, json.JSONDecodeError) as e:
        return 0, 1, 0, [f"no test results in {logs} ({e.__class__.__name__})"]

    gtest_suites = {}
    try:
        root = ET.parse(os.path.join(logs, logbase + ".junit.xml")).getroot()
        names = sorted((p["name"] for p in programs), key=len, reverse=True)
        for suite in root.iter("testsuite"):
            # meson names a folded-in GoogleTest suite "PROJECT.TEST NAME.GTEST SUITE"
            # (meson 1.0: TEST NAME is "PROJECT:SUITE / TEST"; accept the bare test name too)
            sname = suite.get("name", "").split(".", 1)[-1]
            for n in names:
                if sname.startswith(n + ".") or sname.startswith(n.rpartition(" / ")[2] + "."):
                    gtest_suites.setdefault(n, []).append(suite)
                    break
    except (FileNotFoundError, ET.ParseError):
        pass

    for prog in programs:
        name, result = prog["name"], prog.get("result", "ERROR")
        cases = list(cases_of(gtest_suites.get(name, [])))
        own = junitxml_path(prog.get("command"))
        if own:
            try:
                cases += list(cases_of(ET.parse(own).getroot().iter("testsuite")))
            except (FileNotFoundError, ET.ParseError):
                pass
        for case, verdict, why in cases:
            if verdict == "passed":
                passed += 1
            elif verdict == "skipped":
                skipped += 1
                bad.append(f"SKIPPED {name}: {case}")
            else:
                failed += 1
                bad.append(f"FAILED  {name}: {case}")
                bad += [f"        | {line}" for line in why]
        program_ok = result in PASSING or result in SKIPPING
        if cases:
            if not program_ok and not any(v == "failed" for _, v, _ in cases):
                failed += 1
                bad.append(f"FAILED  {name}: {result} (exit status {prog.get('returncode')})"
                           " although its cases passed")
        elif result in PASSING:
            passed += 1
        elif result in SKIPPING:
            skipped += 1
            bad.append(f"SKIPPED {name}")
        else:
            failed += 1
            bad.append(f"FAILED  {name}: {result} (exit status {prog.get('returncode')})")
        if not program_ok:
            excerpt = sanitizer_excerpt(prog.get("stdout", "") + "\n" + prog.get("stderr", ""))
            bad += [f"        | {line}" for line in excerpt]
    return passed, failed, skipped, bad


def summary(passed, failed, skipped):
    line = f"{passed} passed, {failed} failed"
    return line + (f", {skipped} skipped" if skipped else "")


def main(argv):
    if len(argv) < 3 or argv[1] not in ("clean", "count", "targets"):
        print("\n".join(__doc__.strip().splitlines()[2:5]), file=sys.stderr)
        return 2
    if argv[1] == "targets":
        print("\n".join(targets(argv[2], set(argv[3:]))))
        return 0
    if argv[1] == "clean":
        for d in argv[2:]:
            clean(d)
        return 0
    total = [0, 0, 0]
    lines = []
    for spec in argv[2:]:
        label, _, build_dir = spec.rpartition("=")
        label = label or build_dir
        p, f, s, bad = count_run(build_dir)
        for b in bad:
            print(f"[{label}] {b}")
        lines.append(f"[{label}] {summary(p, f, s)}")
        total = [total[0] + p, total[1] + f, total[2] + s]
    for line in lines:
        print(line)
    passed, failed, skipped = total
    if passed + failed + skipped == 0:
        failed = 1
        print("no test ran")
    print(summary(passed, failed, skipped))
    return 0 if failed == 0 and skipped == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
