"""Events and hooks in the lab (issue 7, docs/events.md), judged from outside the appliance:
its event log file, `sdwanctl show events / hooks / stats`, its daemon log and /proc.

The lab is scripts/lab's, brought up from a copy of scripts/lab whose tests/configs/ add an
`events.hooks` section (scripts/lab has no option for it; it rewrites only the event log's
path, into its state dir) and short SA lifetimes so that rekeys happen during the test, and
without the edge's application checks (web-b's HTTP GET, docs/apps.md, is data on a path: on the
blacked-out isp1 it could take the path down by the early-down rule, "data and probes stopped",
before the "missed 3 probes" this test expects):

- "*": a recorder that appends its standard input to a file: every event reaches the hooks,
  as one JSON line.
- path_down: a hook that sleeps forever (a shell waiting for `sleep`: a process group of two),
  killed at the hook timeout (HOOK_TIMEOUT_S).

The test: black out isp1 (`scripts/lab impair isp1 blackout`); path_down of isp1:hub reaches the
event log and `show events` while the sleeping hook starts; clear isp1 while the hook still
sleeps: path_up of isp1:hub still arrives, and `show events` still answers at once (the hook
blocks nothing); then the hook is killed at its timeout (SIGTERM to its group, logged), and
nothing of it is left, not even a zombie. Finally the event log has one valid JSON line per
event, seq 1, 2, 3... with nothing missing, the same events as `show events` and as the
recorder hook saw, and the class moves and SA rekeys of the run are among them.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from labkit import BUILD, TAG, lab_cmd, lab_script_with, module_sweep  # noqa: F401 (autouse fixture)

SDWANCTL = Path(os.environ.get("SDWANCTL", Path(BUILD) / "control" / "cli" / "sdwanctl"))
HOOK_TIMEOUT_S = 10.0  # long enough for path_up to come while the hook sleeps, even on a loaded CI box
KILL_GRACE_S = 1.0
SA_SECONDS = 20  # hard lifetime; the paths rekey at 90 %, every 18 s

_counter = iter(range(7700, 7800))


def write_hooks(d: Path) -> dict[str, Path]:
    d.mkdir(parents=True)
    rec, sleeper = d / "record", d / "sleep-forever"
    rec.write_text(f"#!/bin/sh\ncat >> {d}/recorded.jsonl\n")
    # Not `exec sleep`: the shell stays the group's leader and sleep its child, so the timeout
    # must kill a whole group, and the sleep must be reaped although its parent dies first.
    sleeper.write_text(f"#!/bin/sh\necho $$ > {d}/sleeper.$SDWAN_EVENT_SEQ.pid\n"
                       "echo \"sleeping on $SDWAN_EVENT_TYPE #$SDWAN_EVENT_SEQ\"\nsleep 100000\necho never\n")
    for f in (rec, sleeper):
        f.chmod(0o755)
    return {"record": rec, "sleep": sleeper, "dir": d}


def lab_script(root: Path, hooks: dict[str, Path]) -> Path:
    def edit(cfg, a):
        cfg["esp"] = dict(cfg.get("esp") or {}, lifetime={"seconds": SA_SECONDS})
        if a == "edge":
            cfg.pop("apps", None)
            cfg["events"] = dict(cfg.get("events") or {}, hook_timeout_ms=int(HOOK_TIMEOUT_S * 1000),
                                 hook_kill_grace_ms=int(KILL_GRACE_S * 1000),
                                 hooks={"*": [str(hooks["record"])], "path_down": [str(hooks["sleep"])]})
    return lab_script_with(root, edit)


class EventsLab:
    def __init__(self, prefix: str, script: Path, status: dict, hooks: dict[str, Path]):
        self.prefix, self.script, self.status, self.hooks = prefix, script, status, hooks
        self.edge = status["appliances"]["edge"]

    def ctl(self, *args: str, timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run([str(SDWANCTL), "--socket", self.edge["socket"], *args], capture_output=True,
                              text=True, timeout=timeout)

    def ctl_json(self, *args: str):
        p = self.ctl(*args, "--json")
        assert p.returncode == 0, f"sdwanctl {' '.join(args)}: {p.stdout}{p.stderr}"
        return json.loads(p.stdout)

    def log_events(self) -> list[dict]:
        """The event log file, every line parsed (a line that is not JSON fails the test)."""
        out = []
        text = Path(self.edge["events"]).read_text()
        assert text == "" or text.endswith("\n"), f"the event log ends in half a line: {text[-200:]!r}"
        for n, line in enumerate(text.splitlines(), 1):
            try:
                e = json.loads(line)
            except json.JSONDecodeError as ex:
                raise AssertionError(f"event log line {n} is not JSON ({ex}): {line!r}") from None
            assert isinstance(e, dict), f"event log line {n} is not an object: {line!r}"
            out.append(e)
        return out

    def wait_log(self, pred, timeout: float, what: str) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for e in self.log_events():
                if pred(e):
                    return e
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} in the event log within {timeout} s: {self.log_events()[-8:]}")
            time.sleep(0.05)

    def daemon_log(self) -> str:
        return Path(self.edge["log"]).read_text(errors="replace")


@pytest.fixture
def lab(tmp_path):
    hooks = write_hooks(tmp_path / "hooks")
    script = lab_script(tmp_path / "tree", hooks)
    prefix = f"L{TAG}x{next(_counter)}-"
    try:
        lab_cmd(prefix, "up", script=script)
        status = json.loads(lab_cmd(prefix, "status", "--json", script=script).stdout)
        assert status["up"], status
        cfg = yaml.safe_load(Path(status["appliances"]["edge"]["config"]).read_text())
        assert cfg["events"]["log"] == status["appliances"]["edge"]["events"], cfg["events"]
        assert Path(cfg["events"]["log"]).parent == Path(status["state_dir"]), cfg["events"]
        assert cfg["events"]["hooks"]["path_down"] == [str(hooks["sleep"])], cfg["events"]
        assert "apps" not in cfg, f"the edge still has application checks: {cfg['apps']}"
        yield EventsLab(prefix, script, status, hooks)
    finally:
        lab_cmd(prefix, "down", script=script, check=False)


def alive(pid: int) -> bool:
    """True while pid exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


def group_members(pgid: int) -> list[str]:
    """Every process (zombies included) in process group pgid, as "pid state ppid"."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        f = stat[stat.rfind(")") + 2:].split()
        if int(f[2]) == pgid:
            out.append(f"{d.name} {f[0]} ppid {f[1]}")
    return out


def test_a_hook_that_sleeps_forever_is_killed_at_its_timeout_and_events_keep_flowing(lab):
    hooks_dir: Path = lab.hooks["dir"]
    path = "isp1:hub"
    start_seq = max((e["seq"] for e in lab.log_events()), default=0)

    # `show events --follow` prints what comes, as it comes (one JSON object per line here).
    follow = subprocess.Popen([str(SDWANCTL), "--socket", lab.edge["socket"], "show", "events", "--follow", "--json",
                               "--type", "path_down,path_up"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    # 1. Blackout: path_down reaches the log and `show events`; its sleeping hook starts.
    lab_cmd(lab.prefix, "impair", "isp1", "blackout", script=lab.script)
    down = lab.wait_log(lambda e: e["type"] == "path_down" and e.get("path") == path and e["seq"] > start_seq,
                        10, f"path_down of {path}")
    assert (down["from"], down["to"], down["uplink"], down["peer"]) == ("up", "down", "isp1", "hub"), down
    assert down["reason"] == "missed 3 probes", down
    assert down["name"] == "edge" and re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", down["time"]), down
    shown = lab.ctl_json("show", "events", "--type", "path_down")
    assert any(e["seq"] == down["seq"] for e in shown), shown
    pid_file = hooks_dir / f"sleeper.{down['seq']}.pid"
    deadline = time.monotonic() + 5
    # The shell writes its pid, then forks its sleep: wait for a whole line and both processes.
    while not (pid_file.exists() and pid_file.read_text().endswith("\n")):
        assert time.monotonic() < deadline, f"the path_down hook did not start: {lab.daemon_log()[-2000:]}"
        time.sleep(0.05)
    t_hook = time.monotonic()
    sleeper = int(pid_file.read_text())
    while len(group_members(sleeper)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive(sleeper)
    assert len(group_members(sleeper)) == 2, f"the hook's group is the shell and its sleep: {group_members(sleeper)}"
    # Hooks run on the control core, never on a worker's (docs/events.md).
    control = yaml.safe_load(Path(lab.edge["config"]).read_text())["lcores"]["control"]
    cpus = re.search(r"Cpus_allowed_list:\s*(\S+)", Path(f"/proc/{sleeper}/status").read_text()).group(1)
    assert cpus == str(control), f"the hook may run on CPUs {cpus}, expected only the control core {control}"

    # 2. While it sleeps, the events keep flowing: clear isp1, path_up arrives, show answers.
    lab_cmd(lab.prefix, "impair", "isp1", "clear", script=lab.script)
    up = lab.wait_log(lambda e: e["type"] == "path_up" and e.get("path") == path and e["seq"] > down["seq"],
                      HOOK_TIMEOUT_S - 1.5, f"path_up of {path} while the hook sleeps")
    t0 = time.monotonic()
    shown = lab.ctl_json("show", "events")
    assert time.monotonic() - t0 < 2, "show events is slow while a hook runs"
    assert any(e["seq"] == up["seq"] for e in shown), shown
    assert alive(sleeper), "the hook was gone before path_up: this proves nothing about blocking"
    assert time.monotonic() - t_hook < HOOK_TIMEOUT_S
    stats = lab.ctl_json("show", "stats")["events"]
    assert stats["hooks_running"] >= 1, stats
    time.sleep(1)  # the follower asks every 0.5 s
    follow.send_signal(signal.SIGINT)
    out, err = follow.communicate(timeout=10)
    assert follow.returncode == 0, (follow.returncode, err)
    followed = [json.loads(x) for x in out.splitlines()]
    assert all(e["type"] in ("path_down", "path_up") for e in followed), followed
    seqs = [e["seq"] for e in followed]
    assert seqs == sorted(set(seqs)) and down["seq"] in seqs and up["seq"] in seqs, followed
    # The class that used isp1 left it at path_down (and the event log says so).
    moved = [e for e in lab.log_events() if e["type"] == "class_moved" and down["seq"] < e["seq"] < up["seq"]]
    assert any(path in e["from"] and path not in e["to"] for e in moved), moved

    # 3. The timeout: SIGTERM to the group, logged; nothing of it left, not even a zombie.
    deadline = t_hook + HOOK_TIMEOUT_S + KILL_GRACE_S + 5
    run = None
    while run is None:
        runs = [r for r in lab.ctl_json("show", "hooks") if r["seq"] == down["seq"] and r["hook"] == str(lab.hooks["sleep"])]
        run = runs[0] if runs else None
        if run is None:
            assert time.monotonic() < deadline, f"the sleeping hook was not ended: {lab.daemon_log()[-3000:]}"
            time.sleep(0.1)
    assert run["result"] == "timeout" and run["timed_out"] and run["signal"] == 15, run
    assert HOOK_TIMEOUT_S * 1000 <= run["duration_ms"] <= (HOOK_TIMEOUT_S + KILL_GRACE_S) * 1000 + 500, run
    assert run["output"] == f"sleeping on path_down #{down['seq']}\n", run
    log = lab.daemon_log()
    hook = re.escape(str(lab.hooks["sleep"]))
    assert re.search(rf"hook {hook} for path_down #{down['seq']}: still running after {int(HOOK_TIMEOUT_S * 1000)} ms: SIGTERM to its "
                     rf"process group {sleeper}\n", log), log[-3000:]
    assert re.search(rf"hook {hook} for path_down #{down['seq']}: timed out after {int(HOOK_TIMEOUT_S * 1000)} ms, killed by SIGTERM", log), \
        log[-3000:]
    assert not alive(sleeper)
    assert group_members(sleeper) == [], f"left of the hook's process group: {group_members(sleeper)}"
    table = lab.ctl("show", "hooks").stdout
    assert table.splitlines()[0].split() == ["STARTED", "EVENT", "HOOK", "RESULT", "MS", "OUTPUT"], table
    assert re.search(rf"path_down #{down['seq']} +{hook} +timeout +\d+ +sleeping on path_down #{down['seq']}\n", table), \
        table
    stats = lab.ctl_json("show", "stats")["events"]
    assert stats["hooks_timed_out"] >= 1 and stats["hooks_dropped"] == 0, stats
    assert stats["log_healthy"] and stats["log_failed"] == 0 and stats["log_dropped"] == 0, stats

    # 4. An SA rekey happens within the short lifetime, as an event like the others.
    rekey = lab.wait_log(lambda e: e["type"] == "sa_rekey", SA_SECONDS + 10, "sa_rekey")
    assert re.fullmatch(r"0x[0-9a-f]{8}", rekey["spi"]) and rekey["epoch"] > rekey["previous_epoch"], rekey
    assert rekey["direction"] == "out" and rekey["installed"] is True, rekey

    # 5. The log: one valid JSON line per event, seq 1, 2, 3... without a gap, the bus's
    # fields first; the same events as `show events` and as the "*" hook received. Events may
    # still come while the views are read one after the other (voice fails back to isp1
    # failback_stable_ms after path_up, the paths keep rekeying), and each view gets them at its
    # own moment (the ring at once, the log file and the hooks from their own threads): so every
    # event of the first read of the log must be in all of them, and the views must agree up to
    # the last seq all of them have.
    time.sleep(0.5)
    events = lab.log_events()
    n = len(events)
    lines = Path(lab.edge["events"]).read_text().splitlines()
    assert [e["seq"] for e in events] == list(range(1, n + 1)), [e["seq"] for e in events]
    for line, e in zip(lines, events):
        assert line.startswith('{"time":"') and list(e)[:4] == ["time", "seq", "type", "name"], line
        assert e["name"] == "edge" and e["type"] in {"path_up", "path_down", "path_damped", "class_moved",
                                                     "sla_breached", "sla_recovered", "sa_rekey"}, line
    shown = lab.ctl_json("show", "events")
    written = lab.ctl_json("show", "stats")["events"]["log_written"]
    deadline = time.monotonic() + 10
    while True:
        recorded = [json.loads(x) for x in (hooks_dir / "recorded.jsonl").read_text().splitlines()]
        if set(range(1, n + 1)) <= {r["seq"] for r in recorded} or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    later = lab.log_events()  # read last: holds every line counted in `written`
    assert later[:n] == events and [e["seq"] for e in later] == list(range(1, len(later) + 1)), \
        f"the log changed or has a gap: {[e['seq'] for e in later]}"
    last_shown = max((e["seq"] for e in shown), default=0)
    last_recorded = max((r["seq"] for r in recorded), default=0)
    common = min(later[-1]["seq"], last_shown, last_recorded)
    assert common >= n, (f"an event of the log is missing from a view: log 1..{n}, show events up to "
                         f"{last_shown}, the \"*\" hook up to {last_recorded}")

    def upto(xs):
        return [x for x in xs if x["seq"] <= common]
    assert [(e["seq"], e["type"]) for e in upto(shown)] == [(e["seq"], e["type"]) for e in upto(later)]
    # log_written counts a line once it is written: every line of the first read, none not in the last.
    assert n <= written <= len(later), (n, written, len(later))
    rec_seqs = sorted(r["seq"] for r in recorded)
    assert len(rec_seqs) == len(set(rec_seqs)), f"the \"*\" hook saw an event twice: {rec_seqs}"
    assert [q for q in rec_seqs if q <= common] == list(range(1, common + 1)), "the \"*\" hook saw every event once"
    assert {r["seq"]: r for r in upto(recorded)} == {e["seq"]: e for e in upto(later)}, \
        "the \"*\" hook's events differ from the log's"
    assert {r["seq"]: r for r in recorded}[down["seq"]] == down
    table = lab.ctl("show", "events", "--type", "path_down").stdout
    assert re.search(rf"path_down +{path} +up -> down: missed 3 probes", table), table
