"""The lab as a user meets it: scripts/lab up, real traffic between lan-a and lan-b through
two sdwand processes and three emulated ISPs, impairment measured from packets, and
scripts/lab down leaving nothing behind.

Each test brings up its own lab under a private prefix (namespaces L<tag>-lan-a, ...), so it
never touches a demo running beside it, and tears it down in a finalizer, failed or not.
"""

from __future__ import annotations

import json
import os
import re
import signal
import statistics
import subprocess
import time
from pathlib import Path

import pytest

from labkit import TAG, lab_cmd, namespaces, sweep_dead_labs as _sweep

HOST_A, HOST_B = "192.168.10.2", "192.168.20.2"
GW_A, GW_B = "192.168.10.1", "192.168.20.1"
_counter = iter(range(1000))


@pytest.fixture(scope="session", autouse=True)
def sweep_dead_labs():
    """Removes labs of earlier test runs whose pytest process died without cleaning up."""
    _sweep()
    yield


class Lab:
    def __init__(self, prefix: str, status: dict) -> None:
        self.prefix = prefix
        self.status = status

    def ns(self, role: str) -> str:
        return self.prefix + role

    def x(self, role: str, *cmd: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
        p = subprocess.run(["ip", "netns", "exec", self.ns(role), *cmd], capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} in {role} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def ctl_json(self, appliance: str, *what: str):
        p = lab_cmd(self.prefix, "ctl", appliance, "show", *what, "--json")
        return json.loads(p.stdout)

    def impair(self, isp: str, *words: str) -> str:
        return lab_cmd(self.prefix, "impair", isp, *words).stdout.strip()

    def ping(self, src: str, dst: str, count: int, interval: float = 0.02, ttl: int | None = None,
             wait: float = 1.0) -> tuple[int, int, list[float], str]:
        cmd = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait)]
        if ttl is not None:
            cmd += ["-t", str(ttl)]
        p = self.x(src, *cmd, dst, timeout=count * interval + 30)
        m = re.search(r"(\d+) packets transmitted, (\d+) received", p.stdout)
        sent, recv = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
        rtts = [float(r) for r in re.findall(r"time=([\d.]+) ms", p.stdout)]
        return sent, recv, rtts, p.stdout + p.stderr

    def iperf(self, client: str, server_ip: str, server: str, secs: int = 3, reverse: bool = False) -> float:
        srv = subprocess.Popen(["ip", "netns", "exec", self.ns(server), "iperf3", "-s", "-1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            time.sleep(0.5)
            args = ["iperf3", "-c", server_ip, "-t", str(secs), "-J"] + (["-R"] if reverse else [])
            p = self.x(client, *args, timeout=secs + 30)
            res = json.loads(p.stdout)
            assert "error" not in res, res.get("error")
            return res["end"]["sum_received"]["bits_per_second"] / 1e6
        finally:
            try:
                os.killpg(srv.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            srv.wait(timeout=10)


@pytest.fixture
def lab():
    prefix = f"L{TAG}x{next(_counter)}-"
    try:
        lab_cmd(prefix, "up")
        status = json.loads(lab_cmd(prefix, "status", "--json").stdout)
        yield Lab(prefix, status)
    finally:
        lab_cmd(prefix, "down", check=False)


def leftovers(prefix: str) -> list[str]:
    found = [f"namespace {n}" for n in namespaces() if n.startswith(prefix)]
    state = Path("/run/sdwan-lab") / prefix.rstrip("-")
    if state.exists():
        found.append(f"state dir {state}")
    for fp in ("edge", "hub"):
        if Path(f"/var/run/dpdk/{prefix}{fp}").exists():
            found.append(f"DPDK runtime dir of {prefix}{fp}")
        found += [f"hugepage file {f}" for f in Path("/dev/hugepages").glob(f"{prefix}{fp}map_*")]
    ps = subprocess.run(["pgrep", "-af", f"/run/sdwan-lab/{prefix.rstrip('-')}/"], capture_output=True, text=True).stdout
    found += [f"process {line}" for line in ps.splitlines() if line.strip()]
    return found


def median_rtt(lab: Lab, n: int = 50) -> float:
    sent, recv, rtts, out = lab.ping("lan-a", HOST_B, n, interval=0.02)
    assert recv >= n * 0.9, out
    return statistics.median(rtts)


def test_status_names_hosts_appliances_and_isps(lab):
    s = lab.status
    assert s["up"] is True
    assert s["hosts"]["lan-a"] == {"namespace": lab.ns("lan-a"), "address": HOST_A, "gateway": GW_A}
    assert s["hosts"]["lan-b"]["address"] == HOST_B
    for a in ("edge", "hub"):
        assert s["appliances"][a]["namespace"] == lab.ns(a)
        assert Path(s["appliances"][a]["socket"]).is_socket()
    assert sorted(s["isps"]) == ["isp1", "isp2", "isp3"]
    assert all(v["namespace"] == lab.ns(k) for k, v in s["isps"].items())


def test_ping_and_iperf3_through_the_overlay_both_ways(lab):
    for src, dst in (("lan-a", HOST_B), ("lan-b", HOST_A)):
        sent, recv, _, out = lab.ping(src, dst, 20, interval=0.05)
        assert sent == 20 and recv == 20, out
    up = lab.iperf("lan-a", HOST_B, "lan-b")
    down = lab.iperf("lan-a", HOST_B, "lan-b", reverse=True)
    assert up > 20 and down > 20, f"lan-a -> lan-b {up:.0f} Mbit/s, lan-b -> lan-a {down:.0f} Mbit/s"
    edge = lab.ctl_json("edge", "stats")
    assert edge["counters"]["encapsulated"] > 1000
    assert edge["counters"]["decapsulated"] > 1000


def test_lan_host_resolves_its_gateway_by_arp(lab):
    lab.x("lan-a", "ip", "neigh", "flush", "dev", "eth0", check=True)
    sent, recv, _, out = lab.ping("lan-a", GW_A, 3, interval=0.2)
    assert recv == 3, out
    neigh = lab.x("lan-a", "ip", "neigh", "show", GW_A, check=True).stdout
    lan_mac = next(p["mac"] for p in lab.ctl_json("edge", "ports") if p["name"] == "lan")
    assert lan_mac in neigh.lower(), f"lan-a's ARP entry for {GW_A}: {neigh!r}, edge LAN MAC {lan_mac}"
    host_mac = lab.x("lan-a", "cat", "/sys/class/net/eth0/address", check=True).stdout.strip()
    learned = {n["address"]: n for n in lab.ctl_json("edge", "neighbors")}
    assert learned.get(HOST_A, {}).get("mac") == host_mac, f"the edge learned lan-a from its request: {learned}"
    assert learned[HOST_A]["state"] == "reachable" and learned[HOST_A]["permanent"] is False


def test_ttl_expiry_gets_time_exceeded_from_each_appliance(lab):
    _, _, _, out = lab.ping("lan-a", HOST_B, 1, ttl=1, wait=2)
    assert re.search(rf"From {re.escape(GW_A)} .*Time to live exceeded", out), out
    _, _, _, out = lab.ping("lan-a", HOST_B, 1, ttl=2, wait=2)
    assert re.search(rf"From {re.escape(GW_B)} .*Time to live exceeded", out), \
        f"the hub's time-exceeded should come back through the overlay:\n{out}"


def test_unknown_prefix_is_dropped_and_counted(lab):
    before = lab.ctl_json("edge", "stats")["drops"]["no_route"]
    sent, recv, _, out = lab.ping("lan-a", "203.0.113.5", 5, interval=0.1)
    assert recv == 0, out
    assert "Destination Net Unreachable" in out, out
    after = lab.ctl_json("edge", "stats")["drops"]["no_route"]
    assert after - before == 5


# The lab's default class (bulk) balances flows over isp1 and isp2 (isp3 is metered): a ping or
# an iperf3 flow takes either, by its hash. The emulator tests below impair every ISP alike so
# they measure the emulator whatever path a flow takes.
ISPS = ("isp1", "isp2", "isp3")


def impair_all(lab, *words: str) -> None:
    for isp in ISPS:
        assert "ok" in lab.impair(isp, *words)


def test_emulated_delay_raises_rtt_by_40ms(lab):
    base = median_rtt(lab)
    impair_all(lab, "delay=40ms")
    delayed = median_rtt(lab)
    assert abs((delayed - base) - 40.0) <= 2.0, f"baseline {base:.2f} ms, with 40 ms delay {delayed:.2f} ms"
    impair_all(lab, "clear")
    assert abs(median_rtt(lab) - base) <= 2.0


def test_emulated_loss_drops_ten_percent_of_2000_pings(lab):
    impair_all(lab, "loss=10%")
    sent, recv, _, out = lab.ping("lan-a", HOST_B, 2000, interval=0.002, wait=1)
    assert sent == 2000, out[-500:]
    lost = 100.0 * (sent - recv) / sent
    assert 7.0 <= lost <= 13.0, f"lost {lost:.1f} % of {sent}"


def wait_paths_up(lab, names: set[str], timeout: float = 5.0) -> float:
    """Waits until exactly these edge paths are measured up; returns how long it took."""
    t0 = time.monotonic()
    up: set[str] = set()
    while time.monotonic() - t0 < timeout:
        up = {p["name"] for p in lab.ctl_json("edge", "paths") if p["state"] == "up"}
        if up == names:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"edge paths up: {sorted(up)}, expected {sorted(names)} within {timeout} s")


ALL_PATHS = {"isp1:hub", "isp2:hub", "isp3:hub"}


def test_blackout_drops_everything_and_clear_restores(lab):
    """Every ISP blacked out: nothing gets through. Cleared: everything does again, once the
    appliances have measured the paths up (hold_up good probes, issue 5)."""
    for isp in ("isp1", "isp2", "isp3"):
        assert "ok" in lab.impair(isp, "blackout")
    sent, recv, _, out = lab.ping("lan-a", HOST_B, 50, interval=0.02)
    assert sent == 50 and recv == 0, out
    for isp in ("isp1", "isp2", "isp3"):
        lab.impair(isp, "clear")
    wait_paths_up(lab, ALL_PATHS)
    sent, recv, _, out = lab.ping("lan-a", HOST_B, 20, interval=0.05)
    assert recv == 20, out


def ping_path(lab) -> str:
    """The edge path lan-a's pings to lan-b take: their flow in `show flows`."""
    for f in lab.ctl_json("edge", "flows"):
        if f.get("proto") == "icmp" and f.get("src") == HOST_A and f.get("dst") == HOST_B:
            return f["path"]
    raise AssertionError("no ICMP flow lan-a -> lan-b in the edge's show flows")


def failover_pings(lab) -> tuple[str, str, int, str]:
    """100 pings at 20 ms; the path carrying them blacked out 0.4 s in. Returns (path, isp,
    pings lost, ping's output); the isp stays blacked out."""
    lab.ping("lan-a", HOST_B, 1, interval=0.2)
    p = subprocess.Popen(["ip", "netns", "exec", lab.ns("lan-a"), "ping", "-n", "-c", "100", "-i", "0.02",
                          "-W", "1", HOST_B], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(0.4)
        path = ping_path(lab)
        isp = path.split(":")[0]
        assert "ok" in lab.impair(isp, "blackout")
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    sent, recv = int(m.group(1)), int(m.group(2))
    assert sent == 100, out
    return path, isp, 100 - recv, out


def test_blackout_of_the_path_in_use_fails_over_within_the_detection_time(lab):
    """Issue 5: the path carrying the pings is blacked out mid-stream; both appliances declare
    it down after `multiplier` missed probes and move the flow to another path, so only the
    pings of that time are lost: at most interval x (multiplier + 1) = 400 ms at the defaults,
    20 pings at 20 ms, plus 2 in flight. A figure above that is measured once more on a clean
    lab, and printed: on a loaded two-core CI box the emulators and both appliances share the
    cores, and a run whose ping itself fell behind its schedule says more about the box than
    about the failover. Two misses fail."""
    path, isp, lost, out = failover_pings(lab)
    if lost > 22:
        print(f"first try: {lost} of 100 pings lost across the failover from {path}; once more")
        lab.impair(isp, "clear")
        wait_paths_up(lab, ALL_PATHS, timeout=15)
        time.sleep(1)
        path, isp, lost, out = failover_pings(lab)
    print(f"failover from {path}: {lost} of 100 pings lost")
    assert lost <= 22, f"{lost} of 100 pings lost across the failover from {path}\n{out}"
    assert lost >= 5, f"only {lost} lost: was {path} carrying them at all?\n{out}"
    paths = {q["name"]: q for q in lab.ctl_json("edge", "paths")}
    assert paths[path]["state"] == "down", paths[path]
    # With pings flowing, early down ("data and probes stopped ...") may beat "missed 3 probes".
    assert re.search(r"missed \d+ probes|data and probes stopped", paths[path]["reason"]), paths[path]
    lab.impair(isp, "clear")
    wait_paths_up(lab, ALL_PATHS)


def test_rate_limit_caps_iperf3_near_10mbit(lab):
    impair_all(lab, "rate=10mbit")
    mbps = lab.iperf("lan-a", HOST_B, "lan-b", secs=5)
    assert 8.0 <= mbps <= 10.5, f"{mbps:.2f} Mbit/s through a 10 Mbit/s ISP"


def test_bad_impairment_is_refused_with_a_clear_error():
    prefix = f"L{TAG}x{next(_counter)}-"
    p = lab_cmd(prefix, "impair", "isp9", "delay=1ms", check=False)
    assert p.returncode == 1 and "unknown ISP" in p.stderr


def test_down_leaves_nothing_behind():
    prefix = f"L{TAG}x{next(_counter)}-"
    try:
        lab_cmd(prefix, "up")
        assert len([n for n in namespaces() if n.startswith(prefix)]) == 7
        assert leftovers(prefix), "sanity: an up lab is visible to the leftover check"
    finally:
        lab_cmd(prefix, "down", check=False)
    assert leftovers(prefix) == []


def test_down_cleans_up_after_a_crash():
    prefix = f"L{TAG}x{next(_counter)}-"
    try:
        lab_cmd(prefix, "up")
        # A hard crash: the daemons and emulators die without any cleanup of their own.
        for role in ("edge", "hub", "isp1", "isp2", "isp3"):
            pids = subprocess.run(["ip", "netns", "pids", prefix + role], capture_output=True, text=True).stdout.split()
            for pid in pids:
                os.kill(int(pid), signal.SIGKILL)
    finally:
        lab_cmd(prefix, "down", check=False)
    assert leftovers(prefix) == []
