"""Observability in the lab (issue 7): the Prometheus page and the DPDK telemetry commands of
real sdwand processes, judged from outside.

One lab (scripts/lab up, private prefix) serves every test of this file and is taken down in
the fixture's finalizer, failed or not.

1. `scripts/lab status --json` names each appliance's metrics URL (`metrics`), reachable inside
   the appliance's namespace; the page is served there with Prometheus' content type.
2. The page parses with Debian's python3-prometheus-client
   (`prometheus_client.parser.text_string_to_metric_families`), every family is `sdwan_`-named
   with HELP and a counter or gauge TYPE, and it holds every area the issue lists.
3. Counters move with lab traffic: 30 pings and a 2 s iperf3 TCP stream lan-a -> lan-b raise
   the edge's LAN port, class and path counters, its encapsulated and ESP counters and the
   hub's decapsulated counter by at least what the tools themselves counted (pings sent;
   iperf3's bytes sent, which the inner bytes include).
4. The telemetry socket (DPDK's protocol: SOCK_SEQPACKET, a hello, one command per message),
   and dpdk-telemetry.py -f PREFIX as an operator runs it, answer /sdwan/paths with the paths
   `sdwanctl show paths` lists: same names, uplinks, peers, endpoints, states, counters that
   only grew between the two reads, RTTs that agree.
5. A path that fails shows on the page: a blackout of isp3 turns its sdwan_path_up to 0 and its
   state to down, and once cleared and up again its sdwan_path_failures_total (and
   sdwan_tunnel_failures_total) went up by exactly one, the other paths' by none.
6. A port in use (a second sdwand wanting the running one's metrics port) fails at start with
   one clear line, and a bad metrics section is refused by --check-config with file, line, key.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from labkit import BUILD, ISPS, TAG, lab_cmd, require, sweep_dead_labs

SDWAND = Path(os.environ.get("SDWAND", Path(BUILD) / "control" / "sdwand"))
SDWANCTL = Path(os.environ.get("SDWANCTL", Path(BUILD) / "control" / "cli" / "sdwanctl"))
LAN_B = "192.168.20.2"
PORTS = {"edge": 9469, "hub": 9470}  # tests/configs/*.yaml


class MetricsLab:
    def __init__(self, prefix: str, status: dict) -> None:
        self.prefix, self.status = prefix, status

    def ns(self, role: str) -> str:
        return self.prefix + role

    def x(self, role: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.ns(role), *cmd], capture_output=True, text=True,
                              timeout=timeout)

    def scrape(self, appliance: str) -> str:
        url = self.status["appliances"][appliance]["metrics"]
        p = self.x(appliance, "curl", "-sS", "--fail", "--max-time", "10", url)
        assert p.returncode == 0, f"curl {url} in {self.ns(appliance)}: {p.stderr}"
        return p.stdout

    def samples(self, appliance: str) -> dict[tuple, float]:
        """Every sample of the page by (name, sorted labels)."""
        out = {}
        for fam in text_string_to_metric_families(self.scrape(appliance)):
            for s in fam.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def show(self, appliance: str, what: str):
        sock = self.status["appliances"][appliance]["socket"]
        p = subprocess.run([str(SDWANCTL), "--socket", sock, "show", what, "--json"], capture_output=True,
                           text=True, timeout=10)
        assert p.returncode == 0, f"sdwanctl show {what}: {p.stdout}{p.stderr}"
        return json.loads(p.stdout)

    def telemetry(self, appliance: str, cmd: str):
        """One command over DPDK's telemetry socket, as its protocol has it: connect, read the
        hello (which says how long an answer may be), send the command, read one answer."""
        fp = self.status["appliances"][appliance]["file_prefix"]
        path = f"/var/run/dpdk/{fp}/dpdk_telemetry.v2"
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as s:
            s.settimeout(10)
            s.connect(path)
            hello = json.loads(s.recv(1024).decode())
            assert hello.get("pid") and hello.get("max_output_len"), hello
            s.send(cmd.encode())
            reply = json.loads(s.recv(hello["max_output_len"]).decode())
        key = cmd.split(",", 1)[0]
        assert list(reply) == [key], reply
        return reply[key]


@pytest.fixture(scope="module")
def lab():
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, hugepages)", pytrace=False)
    require("curl")
    sweep_dead_labs()
    prefix = f"L{TAG}x9-"
    try:
        lab_cmd(prefix, "up")
        status = json.loads(lab_cmd(prefix, "status", "--json").stdout)
        assert status["up"], status
        yield MetricsLab(prefix, status)
    finally:
        lab_cmd(prefix, "down", check=False)


def test_status_json_names_each_metrics_url_served_in_the_appliances_namespace(lab):
    for a, port in PORTS.items():
        app = lab.status["appliances"][a]
        assert app["metrics"] == f"http://127.0.0.1:{port}/metrics", app
        p = lab.x(a, "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code} %{content_type}",
                  app["metrics"])
        assert p.stdout == "200 text/plain; version=0.0.4; charset=utf-8", (p.stdout, p.stderr)
    # Prometheus asks for gzip (Accept-Encoding: gzip): the page comes compressed.
    url = lab.status["appliances"]["edge"]["metrics"]
    p = lab.x("edge", "curl", "-sS", "--max-time", "10", "-H", "Accept-Encoding: gzip", "-D", "-", "-o", "/dev/null",
              url)
    assert re.search(r"(?im)^content-encoding: gzip", p.stdout), p.stdout
    # 127.0.0.1 is the appliance's own loopback: the other namespace has nothing there.
    p = lab.x("hub", "curl", "-sS", "--max-time", "5", lab.status["appliances"]["edge"]["metrics"])
    assert p.returncode != 0, "the edge's metrics answered inside the hub's namespace"


REQUIRED = {
    # per path
    "sdwan_path_rtt_seconds": "gauge", "sdwan_path_jitter_seconds": "gauge", "sdwan_path_loss_ratio": "gauge",
    "sdwan_path_state": "gauge", "sdwan_path_up": "gauge",
    # per uplink and port: packets, bytes, drops by reason
    "sdwan_port_rx_packets": "counter", "sdwan_port_tx_bytes": "counter", "sdwan_port_drops": "counter",
    "sdwan_uplink_up": "gauge", "sdwan_drops": "counter",
    # per class
    "sdwan_class_bytes": "counter", "sdwan_class_paths": "gauge", "sdwan_class_path_share_ratio": "gauge",
    # per SA
    "sdwan_sa_packets": "counter", "sdwan_sa_bytes": "counter", "sdwan_sa_drops": "counter",
    # per worker, mempool, host
    "sdwan_worker_busy_ratio": "gauge", "sdwan_mempool_use_ratio": "gauge", "sdwan_host_cpu_usage_ratio": "gauge",
    "sdwan_host_memory_available_bytes": "gauge", "sdwan_host_disk_available_bytes": "gauge",
    # sessions
    "sdwan_flows_active": "gauge", "sdwan_flows_new_per_second": "gauge", "sdwan_tunnel_failures": "counter",
    "sdwan_auth_failures": "counter",
}


def test_page_parses_with_prometheus_client_and_covers_every_area(lab):
    text = lab.scrape("edge")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    # prometheus_client names a counter family without its _total; the page's lines have it.
    for name, typ in REQUIRED.items():
        assert name in fams, f"{name} missing; families: {sorted(fams)}"
        assert fams[name].type == typ, (name, fams[name].type)
    for f in fams.values():
        assert re.fullmatch(r"sdwan_[a-z0-9_]+", f.name), f.name
        assert f.type in ("counter", "gauge"), (f.name, f.type)
        assert f.documentation, f"{f.name} has no HELP"
        for s in f.samples:
            if f.type == "counter":
                assert s.name == f.name + "_total", s
            assert s.value >= 0 or s.value != s.value, s  # no negative figure anywhere
    assert text.count("# TYPE ") == text.count("# HELP ") == len(fams)
    paths = {p["name"]: p for p in lab.show("edge", "paths")}
    rtt = {s.labels["path"]: s.value for s in fams["sdwan_path_rtt_seconds"].samples}
    assert set(rtt) == set(paths), (rtt, paths)
    for name, v in rtt.items():
        assert 0 < v < 1, (name, v)
    up = {s.labels["path"]: s.value for s in fams["sdwan_path_up"].samples}
    assert up == {n: 1.0 for n in paths}, up
    for s in fams["sdwan_worker_busy_ratio"].samples:
        assert 0 <= s.value <= 1, s
    host = {f: fams[f].samples[0].value for f in ("sdwan_host_cpus", "sdwan_host_memory_size_bytes")}
    assert host["sdwan_host_cpus"] == os.cpu_count(), host
    with open("/proc/meminfo") as m:
        total_kb = int(next(line for line in m if line.startswith("MemTotal:")).split()[1])
    assert host["sdwan_host_memory_size_bytes"] == total_kb * 1024, host
    hub = {f.name for f in text_string_to_metric_families(lab.scrape("hub"))}
    assert set(REQUIRED) <= hub


def total(samples: dict[tuple, float], name: str, **labels) -> float:
    """Sum of a family's samples whose labels include labels."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_counters_move_with_lab_traffic(lab):
    require("iperf3")
    e0, h0 = lab.samples("edge"), lab.samples("hub")
    p = lab.x("lan-a", "ping", "-n", "-q", "-c", "30", "-i", "0.02", "-W", "2", LAN_B, timeout=60)
    sent = int(re.search(r"(\d+) packets transmitted", p.stdout).group(1))
    received = int(re.search(r"(\d+) received", p.stdout).group(1))
    assert sent == 30 and received >= 27, p.stdout
    server = subprocess.Popen(["ip", "netns", "exec", lab.ns("lan-b"), "iperf3", "-s", "-1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        time.sleep(0.5)
        c = lab.x("lan-a", "iperf3", "-c", LAN_B, "-t", "2", "-J", timeout=60)
        res = json.loads(c.stdout)
        assert "error" not in res, res
        iperf_bytes = res["end"]["sum_sent"]["bytes"]
    finally:
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
            server.wait(timeout=5)
    e1, h1 = lab.samples("edge"), lab.samples("hub")

    def delta(a, b, name, **labels):
        return total(b, name, **labels) - total(a, name, **labels)

    lan_rx = delta(e0, e1, "sdwan_port_rx_packets_total", port="lan")
    # The host port is forwarded like the LAN port (docs/host.md): the edge's app check web-b
    # (every 10 s, docs/apps.md) is encapsulated too, and counted on port="host".
    assert any(n == "sdwan_port_rx_packets_total" and ("port", "host") in ls for n, ls in e1), \
        "no host port counters on the edge's page"
    host_rx = delta(e0, e1, "sdwan_port_rx_packets_total", port="host")
    enc = delta(e0, e1, "sdwan_encapsulated_packets_total")
    cls_pkts = delta(e0, e1, "sdwan_class_packets_total")
    cls_bytes = delta(e0, e1, "sdwan_class_bytes_total")
    path_tx = delta(e0, e1, "sdwan_path_tx_packets_total")
    path_tx_bytes = delta(e0, e1, "sdwan_path_tx_bytes_total")
    esp_out = delta(e0, e1, "sdwan_esp_packets_total", direction="out")
    sa_out = delta(e0, e1, "sdwan_sa_packets_total", direction="out")
    dec_hub = delta(h0, h1, "sdwan_decapsulated_packets_total")
    figures = dict(lan_rx=lan_rx, host_rx=host_rx, enc=enc, cls_pkts=cls_pkts, cls_bytes=cls_bytes, path_tx=path_tx,
                   path_tx_bytes=path_tx_bytes, esp_out=esp_out, sa_out=sa_out, dec_hub=dec_hub,
                   iperf_bytes=iperf_bytes)
    for k in ("lan_rx", "enc", "cls_pkts", "path_tx", "esp_out", "sa_out", "dec_hub"):
        assert figures[k] >= sent, f"{k} grew by less than the {sent} pings: {figures}"
    # Inner bytes include the IP and TCP headers iperf3's count leaves out.
    for k in ("cls_bytes", "path_tx_bytes"):
        assert figures[k] >= iperf_bytes, f"{k} grew by less than iperf3 sent: {figures}"
    # Everything the LAN and host ports took for the hub was encapsulated, give or take ARP and
    # the odd packet in flight between the two scrapes; nothing else was.
    assert enc <= lan_rx + host_rx, figures
    assert delta(e0, e1, "sdwan_flows_created_total") >= 2, figures  # the ICMP flow and iperf3's
    assert total(e1, "sdwan_auth_failures_total") == 0
    assert total(e1, "sdwan_tunnel_failures_total") == 0


def test_telemetry_paths_match_show_paths(lab):
    shown = {p["name"]: p for p in lab.show("edge", "paths")}
    tel = lab.telemetry("edge", "/sdwan/paths")
    assert "truncated" not in tel, tel
    got = {v["name"]: v for v in tel.values()}
    assert sorted(tel) == [str(i) for i in range(len(shown))], tel
    assert set(got) == set(shown), (got, shown)
    for name, s in shown.items():
        t = got[name]
        for k in ("uplink", "peer", "endpoint", "state"):
            assert t[k] == s[k], (name, k, t[k], s[k])
        assert t["usable"] == (1 if s["usable"] else 0), (name, t, s)
        # Read after show paths: counters can only have grown.
        for tk, sk in (("probes_sent", "probes_sent"), ("tx_pkts", "tx_pkts"), ("rx_pkts", "rx_pkts")):
            assert t[tk] >= s[sk], (name, tk, t[tk], s[sk])
        assert t["probes_sent"] - s["probes_sent"] < 100, (name, t, s)  # ... by a few probes, not another path's
        # Smoothed RTTs read a moment apart: the same figure within the lab's noise.
        assert abs(t["rtt_us"] / 1000 - s["rtt_ms"]) <= max(2.0, 0.5 * s["rtt_ms"]), (name, t, s)

    one = lab.telemetry("edge", "/sdwan/paths,isp2:hub")
    assert list(one) == ["0"] and one["0"]["name"] == "isp2:hub", one
    assert lab.telemetry("edge", "/sdwan/paths,nope") == \
        f"no path \"nope\" (paths: {', '.join(p['name'] for p in lab.show('edge', 'paths'))})"

    classes = lab.telemetry("edge", "/sdwan/classes")
    assert {v["class"] for v in classes.values()} == {c["class"] for c in lab.show("edge", "classes")}
    stats = lab.telemetry("edge", "/sdwan/stats")
    assert stats["name"] == "edge" and stats["paths"] == len(shown), stats
    assert set(stats["drops"]) >= {"no_route", "no_path", "ttl_expired"}, stats
    # DPDK's own commands beside ours.
    assert isinstance(lab.telemetry("edge", "/ethdev/list"), list)


def test_dpdk_telemetry_script_reads_sdwan_paths(lab):
    script = "/usr/bin/dpdk-telemetry.py"
    assert os.access(script, os.X_OK), f"{script} missing (Debian package dpdk; scripts/setup installs it)"
    fp = lab.status["appliances"]["hub"]["file_prefix"]
    p = subprocess.run(["/usr/bin/python3", script, "-f", fp], input="/sdwan/paths\n/\n", capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    answers = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    paths = next(a["/sdwan/paths"] for a in answers if "/sdwan/paths" in a)
    assert {v["name"] for v in paths.values()} == {x["name"] for x in lab.show("hub", "paths")}, paths
    listing = next(a["/"] for a in answers if "/" in a)
    assert {"/sdwan/paths", "/sdwan/classes", "/sdwan/stats", "/ethdev/stats"} <= set(listing), listing


def wait_sample(lab, appliance: str, key: tuple, want: float, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = lab.samples(appliance)
        if s.get(key) == want:
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"{key} not {want} within {timeout} s: {s.get(key)}")
        time.sleep(0.1)


def test_a_path_failure_shows_on_the_page(lab):
    labels = (("path", "isp3:hub"), ("peer", "hub"), ("uplink", "isp3"))
    up = ("sdwan_path_up", labels)
    before = wait_sample(lab, "edge", up, 1.0, 10)
    lab_cmd(lab.prefix, "impair", "isp3", "blackout")
    try:
        # Down after three missed probes (0.3 s at 100 ms) plus scheduling.
        during = wait_sample(lab, "edge", up, 0.0, 5)
        assert during[("sdwan_path_state", tuple(sorted(labels + (("state", "down"),))))] == 1.0
        assert during[("sdwan_path_state", tuple(sorted(labels + (("state", "up"),))))] == 0.0
        assert during[("sdwan_paths_up", ())] == len(ISPS) - 1
    finally:
        lab_cmd(lab.prefix, "impair", "isp3", "clear")
    after = wait_sample(lab, "edge", up, 1.0, 15)
    for isp in ISPS:
        key = ("sdwan_path_failures_total", (("path", f"{isp}:hub"), ("peer", "hub"), ("uplink", isp)))
        assert after[key] - before[key] == (1 if isp == "isp3" else 0), (isp, before[key], after[key])
    t = ("sdwan_tunnel_failures_total", ())
    assert after[t] - before[t] == 1, (before[t], after[t])


def test_metrics_port_in_use_and_bad_metrics_config_are_clear_errors(lab, tmp_path):
    cfg = yaml.safe_load(Path(lab.status["appliances"]["edge"]["config"]).read_text())
    # A second edge in the same namespace: its own socket and file prefix, the same metrics port.
    cfg["mgmt"]["socket"] = str(tmp_path / "second.sock")
    cfg["dpdk"]["file_prefix"] = f"{lab.prefix}second"
    cfg["esp"]["epoch_store"] = str(tmp_path / "second.epochs")
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump(cfg))
    p = lab.x("edge", str(SDWAND), "-c", str(second), timeout=60)
    out = (p.stdout + p.stderr).strip()
    assert p.returncode != 0, out
    want = (f"metrics: cannot listen on 127.0.0.1:{PORTS['edge']}: Address already in use (another sdwand or "
            "exporter there? set metrics.port, or metrics.enabled: false)")
    assert want in out, out
    assert not Path(cfg["mgmt"]["socket"]).exists()
    assert lab.scrape("edge").startswith("# HELP sdwan_info")  # the running one is untouched

    cfg["metrics"] = {"address": "localhost", "port": 9469}
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg, sort_keys=False))
    line = next(i for i, t in enumerate(bad.read_text().splitlines(), start=1) if t.strip().startswith("address: localhost"))
    p = subprocess.run([str(SDWAND), "--check-config", str(bad)], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert (p.stdout + p.stderr).strip().endswith(
        f"{bad}:{line}: metrics.address: expected an IPv4 address of this host like 127.0.0.1, or 0.0.0.0 for "
        "every address, got \"localhost\""), p.stdout + p.stderr
