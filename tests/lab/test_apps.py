"""Application reachability and the host stack's exception path in the lab (issue 7,
docs/apps.md, docs/host.md).

The edge's own kernel reaches lan-b through its host port (the tap sdwan0 the dataplane
forwards for) and the overlay; scripts/lab serves HTTP on lan-b (192.168.20.2:8080). The lab is
scripts/lab's, from copies of tests/configs whose edge checks that service every 2 s, once as an
HTTP GET and once as a TCP connect, so the test's two-interval bound is seconds, not 20 s.

- With the service up, `show apps` has both checks ok with a latency and a 100 % success rate,
  and the Prometheus page has them.
- The host stack's traffic crosses the ISP links only as ESP: a capture on every ISP link while
  the edge's kernel fetches from lan-b holds ESP in UDP 4500 and no TCP at all; lan-b's server
  saw the requests come from the edge's LAN address.
- Management traffic from lan-a to the edge's LAN address (a TCP connect to a port the edge's
  kernel listens on) reaches the host stack through the tap, and its answer comes back.
- Service stopped on lan-b: `app_failing` of each check within two check intervals; started
  again: `app_ok` within two intervals.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from labkit import TAG, Tcpdump, lab_cmd, lab_script_with, module_sweep, require, wall  # noqa: F401 (autouse fixture)

INTERVAL_MS = 2000
TIMEOUT_MS = 1000
EDGE_LAN = "192.168.10.1"
SERVICE = "192.168.20.2:8080"
MGMT_PORT = 2222
# The check the reload test adds: its first run is one interval after the reload, and the test
# must see it `unknown` first, after a reload and a `show apps` through scripts/lab (a Python
# start-up each, a second or more on a loaded machine).
SSH_INTERVAL_MS = 3000
ISP_LINKS = (("isp1", "isp1-e"), ("isp2", "isp2-e"), ("isp3", "isp3-e"))
_counter = iter(range(8800, 8900))


def edit(cfg: dict, appliance: str) -> None:
    if appliance != "edge":
        return
    cfg["apps"] = [
        {"name": "web-b", "type": "http", "target": f"http://{SERVICE}/", "interval_ms": INTERVAL_MS,
         "timeout_ms": TIMEOUT_MS, "expect_status": 200},
        {"name": "web-b-tcp", "type": "tcp", "target": SERVICE, "interval_ms": INTERVAL_MS, "timeout_ms": TIMEOUT_MS},
    ]


class AppsLab:
    def __init__(self, prefix: str, script: Path):
        self.prefix, self.script = prefix, script
        self.status = json.loads(self.lab("status", "--json").stdout)

    def lab(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return lab_cmd(self.prefix, *args, script=self.script, check=check)

    def ns(self, role: str) -> str:
        return self.prefix + role

    def ctl_json(self, *args: str):
        return json.loads(self.lab("ctl", "edge", *args, "--json").stdout)

    def apps(self) -> dict[str, dict]:
        return {a["name"]: a for a in self.ctl_json("show", "apps")}

    def events(self, type_: str) -> list[dict]:
        return [e for e in self.ctl_json("show", "events") if e.get("type") == type_]

    def x(self, role: str, *cmd: str, timeout: float = 20, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(["ip", "netns", "exec", self.ns(role), *cmd], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} in {role}: exit {p.returncode}: {p.stderr or p.stdout}")
        return p

    def wait_apps(self, want: str, timeout: float) -> dict[str, dict]:
        deadline = time.monotonic() + timeout
        apps = {}
        while time.monotonic() < deadline:
            apps = self.apps()
            if apps and all(a["state"] == want for a in apps.values()):
                return apps
            time.sleep(0.2)
        raise AssertionError(f"checks not all {want} within {timeout} s: {json.dumps(apps, indent=1)}")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    prefix = f"L{TAG}x{next(_counter)}-"
    script = lab_script_with(tmp_path_factory.mktemp("apps-lab"), edit)
    try:
        lab_cmd(prefix, "up", script=script)
        yield AppsLab(prefix, script)
    finally:
        lab_cmd(prefix, "down", script=script, check=False)


def test_checks_ok_shown_and_exported(lab):
    apps = lab.wait_apps("ok", 5 * INTERVAL_MS / 1000 + 10)
    assert set(apps) == {"web-b", "web-b-tcp"}
    assert apps["web-b"]["type"] == "http" and apps["web-b-tcp"]["type"] == "tcp"
    assert apps["web-b"]["http_status"] == 200
    for a in apps.values():
        assert a["latency_ms"] is not None and 0 < a["latency_ms"] < TIMEOUT_MS, a
        # A first check may have run before every path was up (the lab waits for the paths, the
        # checks start 2 s after sdwand): the rate then counts it.
        assert a["ok"] >= 1 and a["checks"] == a["ok"] + a["failed"], a
        assert 0 < a["success_pct"] <= 100 and (a["failed"] > 0 or a["success_pct"] == 100.0), a
        assert a["last_error"] is None and a["consecutive_failures"] == 0, a
    table = lab.lab("ctl", "edge", "show", "apps").stdout
    assert "web-b" in table and "LATENCY_MS" in table and "SUCCESS%" in table, table

    from prometheus_client.parser import text_string_to_metric_families
    url = lab.status["appliances"]["edge"]["metrics"]
    page = lab.x("edge", "curl", "-sS", "--fail", "--max-time", "10", url).stdout
    fams = {f.name: f for f in text_string_to_metric_families(page)}
    up = {s.labels["app"]: s.value for s in fams["sdwan_app_up"].samples}
    assert up == {"web-b": 1.0, "web-b-tcp": 1.0}, up
    lat = {s.labels["app"]: s.value for s in fams["sdwan_app_check_latency_seconds"].samples}
    assert all(0 < v < TIMEOUT_MS / 1000 for v in lat.values()) and len(lat) == 2, lat
    ok = {s.labels["app"]: s.value for s in fams["sdwan_app_checks"].samples
          if s.name == "sdwan_app_checks_total" and s.labels["result"] == "ok"}
    assert ok and all(v >= 1 for v in ok.values()), ok
    ratio = {s.labels["app"]: s.value for s in fams["sdwan_app_success_ratio"].samples}
    assert set(ratio) == {"web-b", "web-b-tcp"} and all(0 < v <= 1 for v in ratio.values()), ratio


def test_host_stack_traffic_crosses_the_uplinks_only_as_esp(lab, tmp_path):
    require("tcpdump")
    from scapy.all import IP, TCP, UDP, rdpcap
    caps = []
    try:
        for isp, iface in ISP_LINKS:
            caps.append(Tcpdump(lab.ns(isp), iface, tmp_path / f"{isp}.pcap"))
        for _ in range(5):
            body = lab.x("edge", "curl", "-sS", "--fail", "--max-time", "5", f"http://{SERVICE}/").stdout
            assert body == "lan-b service\n", body
        time.sleep(0.5)
    finally:
        for c in caps:
            c.stop()
    esp, tcp = 0, []
    for c in caps:
        for p in rdpcap(str(c.out)):
            if IP not in p:
                continue
            if TCP in p:
                tcp.append(p.summary())
            elif UDP in p and 4500 in (p[UDP].sport, p[UDP].dport):
                esp += 1
    assert not tcp, f"cleartext TCP on an ISP link: {tcp[:5]}"
    assert esp >= 5 * 4, f"only {esp} ESP packets for 5 HTTP exchanges"
    log = Path(lab.status["state_dir"], "app.log").read_text(errors="replace")
    assert f'{EDGE_LAN} - - ' in log, f"lan-b's server did not see the edge's LAN address: {log[-2000:]}"


def test_management_from_lan_reaches_the_host_stack(lab):
    before = lab.ctl_json("show", "stats")["counters"]["to_host"]
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.ns("edge"), "/usr/bin/python3", "-c",
         "import socket\n"
         f"s = socket.create_server(('{EDGE_LAN}', {MGMT_PORT}))\n"
         "print('listening', flush=True)\n"
         "c, a = s.accept()\n"
         "c.sendall(('hello ' + a[0] + '\\n').encode())\n"
         "c.close()\n"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "listening"
        got = lab.x("lan-a", "/usr/bin/python3", "-c",
                    "import socket\n"
                    f"c = socket.create_connection(('{EDGE_LAN}', {MGMT_PORT}), timeout=5)\n"
                    "print(c.makefile().readline().strip())\n").stdout.strip()
        assert got == "hello 192.168.10.2", got
        server.wait(timeout=10)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    after = lab.ctl_json("show", "stats")["counters"]["to_host"]
    assert after >= before + 3, (before, after)  # SYN, ACK, FIN at least
    # The dataplane still answers pings to the LAN address itself.
    lab.x("lan-a", "ping", "-c", "2", "-i", "0.2", "-W", "2", EDGE_LAN)


def test_stopped_service_raises_app_failing_then_app_ok(lab):
    lab.wait_apps("ok", 5 * INTERVAL_MS / 1000 + 10)
    bound = 2 * INTERVAL_MS / 1000
    seen = {e["seq"] for e in lab.events("app_failing") + lab.events("app_ok")}
    # The service stops (starts) somewhere inside `scripts/lab app stop` (start, which waits for
    # it to listen): the upper bounds run from the end of the call, so that its own time on a
    # loaded machine is not counted against the checks.
    try:
        assert lab.lab("app", "stop").stdout.strip() == "stopped"
        t_stop = time.time()
        fails = {}
        deadline = time.monotonic() + bound + 5
        while time.monotonic() < deadline and len(fails) < 2:
            fails = {e["app"]: e for e in lab.events("app_failing") if e["seq"] not in seen}
            time.sleep(0.1)
        assert set(fails) == {"web-b", "web-b-tcp"}, fails
        for e in fails.values():
            assert wall(e["time"]) - t_stop <= bound, f"app_failing {wall(e['time']) - t_stop:.2f} s after the stop: {e}"
            assert e["to"] == "failing" and e["from"] == "ok" and e["error"], e
        apps = lab.apps()
        assert all(a["state"] == "failing" and a["consecutive_failures"] >= 1 for a in apps.values()), apps
    finally:
        lab.lab("app", "start")
        t_start = time.time()
    oks = {}
    deadline = time.monotonic() + bound + 5
    while time.monotonic() < deadline and len(oks) < 2:
        oks = {e["app"]: e for e in lab.events("app_ok") if e["seq"] not in seen}
        time.sleep(0.1)
    assert set(oks) == {"web-b", "web-b-tcp"}, oks
    for e in oks.values():
        assert wall(e["time"]) - t_start <= bound, f"app_ok {wall(e['time']) - t_start:.2f} s after the start: {e}"
        assert e["latency_ms"] > 0, e
    apps = lab.apps()
    assert all(a["state"] == "ok" and a["success_pct"] < 100 for a in apps.values()), apps


def test_reload_applies_changed_checks_live(lab):
    import yaml
    cfg_file = Path(lab.status["appliances"]["edge"]["config"])
    original = cfg_file.read_text()
    before = lab.apps()
    try:
        cfg = yaml.safe_load(original)
        cfg["apps"] = [a for a in cfg["apps"] if a["name"] == "web-b"] + [
            {"name": "ssh-b", "type": "tcp", "target": "192.168.20.2:22", "interval_ms": SSH_INTERVAL_MS,
             "timeout_ms": 500}]
        cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
        t_reload = time.monotonic()
        r = lab.ctl_json("reload")
        assert r["applied"] and "apps: 2 check(s) -> 2" in r["changes"], r
        after = lab.apps()
        took = time.monotonic() - t_reload
        assert list(after) == ["web-b", "ssh-b"], after
        assert after["web-b"]["checks"] >= before["web-b"]["checks"], "an unchanged check keeps its figures"
        assert after["ssh-b"]["state"] == "unknown" and after["ssh-b"]["checks"] == 0, (
            f"{took:.2f} s after the reload (its first check is due after {SSH_INTERVAL_MS} ms): {after['ssh-b']}")
        # Nothing listens on lan-b's port 22: the new check fails, refused, within two of its intervals.
        deadline = time.monotonic() + 2 * SSH_INTERVAL_MS / 1000 + 3
        while time.monotonic() < deadline and lab.apps()["ssh-b"]["state"] != "failing":
            time.sleep(0.1)
        ssh = lab.apps()["ssh-b"]
        assert ssh["state"] == "failing" and "refused" in ssh["last_error"], ssh
        # A broken apps entry is refused whole; the running checks stay.
        cfg["apps"].append({"name": "bad", "type": "tcp", "target": "10.9.9.9:80"})
        cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
        bad = lab.lab("ctl", "edge", "reload", check=False)
        assert bad.returncode != 0 and "expected a service behind a peer" in bad.stderr, bad.stderr
        assert list(lab.apps()) == ["web-b", "ssh-b"]
    finally:
        cfg_file.write_text(original)
        lab.lab("ctl", "edge", "reload", check=False)
    assert list(lab.apps()) == ["web-b", "web-b-tcp"]
