"""What the lab tests share: driving scripts/lab under a private prefix, sweeping labs a dead
test run left behind, requiring tools, and tcpdump captures that prove they lost nothing.

Prefixes look like L<pid in base 36>x<n>-: the sweep recognises them and removes the labs of
pytest processes that no longer exist."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAB = REPO / "scripts" / "lab"
BUILD = os.environ.get("SDWAN_BUILD", str(REPO / "build"))
ISPS = ("isp1", "isp2", "isp3")
ROLES = ("lan-a", "edge", *ISPS, "hub", "lan-b")


def b36(n: int) -> str:
    d = "0123456789abcdefghijklmnopqrstuvwxyz"
    s = ""
    while True:
        n, r = divmod(n, 36)
        s = d[r] + s
        if not n:
            return s


TAG = b36(os.getpid())


def lab_cmd(prefix: str, *args: str, script: Path = LAB, timeout: float = 180,
            check: bool = True) -> subprocess.CompletedProcess:
    """scripts/lab --prefix PREFIX ARGS (or a copy of it at script); SDWAN_LAB_ESN from the
    caller's environment is dropped: each test says what it wants."""
    env = dict(os.environ, SDWAN_BUILD=BUILD)
    env.pop("SDWAN_LAB_ESN", None)
    p = subprocess.run([str(script), "--prefix", prefix, *args], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"scripts/lab {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def sweep_dead_labs() -> None:
    """Removes labs of earlier test runs whose pytest process died without cleaning up."""
    for ns in namespaces():
        m = re.match(r"^L([0-9a-z]+)x\d+-(" + "|".join(ROLES) + ")$", ns)
        if not m:
            continue
        pid = int(m.group(1), 36)
        if pid != os.getpid() and not Path(f"/proc/{pid}").exists():
            lab_cmd(ns[: -len(m.group(2))], "down", check=False)


def require(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} is not installed (scripts/setup installs it; Debian: apt-get install {tool})",
                    pytrace=False)
    return path


class Tcpdump:
    """tcpdump -w on one interface in one namespace; stop() ends it and checks it lost nothing."""

    def __init__(self, ns: str, iface: str, out: Path):
        self.ns, self.iface, self.out = ns, iface, out
        self.errf = out.with_suffix(".stderr")
        with open(self.errf, "wb") as err:
            # -Z root: Debian's tcpdump otherwise drops to user tcpdump and cannot write here.
            # --immediate-mode: without it libpcap hands packets over a ring block at a time, and
            # what is still in the ring when tcpdump is stopped never reaches the file.
            self.proc = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-n", "-i", iface, "-U",
                                          "--immediate-mode", "-s", "0", "-Z", "root", "-w", str(out)],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                         start_new_session=True)
        deadline = time.monotonic() + 10
        while "listening on" not in self.errf.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"tcpdump on {iface} in {ns} did not start: {self.errf.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGINT)  # ip netns exec execs tcpdump: same pid
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        err = self.errf.read_text(errors="replace")
        got = re.search(r"(\d+) packets? captured", err)
        seen = re.search(r"(\d+) packets? received by filter", err)
        lost = re.search(r"(\d+) packets? dropped by kernel", err)
        # "received by filter" may count a packet or two that arrived after SIGINT stopped the
        # loop (seen once in CI: 130 received, 129 captured): later than the capture window,
        # so not lost from it. The kernel must have dropped none.
        assert got and seen and lost and 0 <= int(seen.group(1)) - int(got.group(1)) <= 2 and lost.group(1) == "0", \
            f"tcpdump on {self.iface} in {self.ns} did not write every packet it saw: {err}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)


# A sequence-numbered UDP stream (sender in one namespace, receiver in another) that counts the
# distinct sequence numbers that arrived: sent - received is what the network lost.
_SENDER = r"""
import socket, sys, time
dst, port, pps, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = int(pps * secs)
t0 = time.perf_counter()
for i in range(n):
    due = t0 + i / pps
    while True:
        d = due - time.perf_counter()
        if d <= 0:
            break
        time.sleep(d if d > 0.002 else 0)
    s.sendto(i.to_bytes(8, "big") + b"x" * 92, (dst, port))
print(n, flush=True)
"""

_RECEIVER = r"""
import socket, sys
port, quiet = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
s.bind(("0.0.0.0", port))
print("ready", flush=True)
seen = set()
s.settimeout(30)
while True:
    try:
        data = s.recv(2048)
    except socket.timeout:
        break
    seen.add(int.from_bytes(data[:8], "big"))
    s.settimeout(quiet)
print(len(seen), flush=True)
"""


def _kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait(timeout=10)


def udp_stream(src_ns: str, dst_ns: str, dst_ip: str, port: int, secs: float, pps: int = 1000):
    """Starts a receiver in dst_ns and a sender of pps packets/s for secs in src_ns; returns a
    function that waits for both and gives (sent, received). A few pings first, so that no ARP
    resolution on the way costs the stream its first packets."""
    subprocess.run(["ip", "netns", "exec", src_ns, "ping", "-n", "-q", "-c", "3", "-i", "0.2", dst_ip],
                   capture_output=True, timeout=30)
    py = "/usr/bin/python3"
    rx = subprocess.Popen(["ip", "netns", "exec", dst_ns, py, "-c", _RECEIVER, str(port), "1.5"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    if rx.stdout.readline().strip() != "ready":
        _kill(rx)
        raise AssertionError(f"UDP receiver did not start: {rx.stderr.read()}")
    tx = subprocess.Popen(["ip", "netns", "exec", src_ns, py, "-c", _SENDER, dst_ip, str(port), str(pps), str(secs)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def result() -> tuple[int, int]:
        try:
            out, err = tx.communicate(timeout=secs + 30)
            assert tx.returncode == 0, err
            sent = int(out.strip())
            out, err = rx.communicate(timeout=40)
            return sent, int(out.strip())
        finally:
            _kill(tx)
            _kill(rx)
    return result


class EdgeLab:
    """A lab from scripts/lab driven through its edge: namespaces by role, sdwanctl on the edge,
    its status (config file, log, pid)."""

    def __init__(self, prefix: str):
        import json
        self.prefix = prefix
        self.status = json.loads(lab_cmd(prefix, "status", "--json").stdout)

    def ns(self, role: str) -> str:
        return self.prefix + role

    def ctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return lab_cmd(self.prefix, "ctl", "edge", *args, check=check, timeout=timeout)

    def ctl_json(self, *args: str):
        import json
        return json.loads(self.ctl(*args, "--json").stdout)

    def wait_all_paths_up(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(p["state"] == "up" for p in self.ctl_json("show", "paths")):
                return
            time.sleep(0.2)
        raise AssertionError(f"edge paths not all up within {timeout} s: {self.ctl('show', 'paths').stdout}")


def edge_lab(prefix: str, cls=EdgeLab):
    """Generator for a module fixture: scripts/lab up under prefix, every path up, then down
    whatever happened."""
    try:
        lab_cmd(prefix, "up")
        lab = cls(prefix)
        lab.wait_all_paths_up()
        yield lab
    finally:
        lab_cmd(prefix, "down", check=False)


def wall(rfc3339: str) -> float:
    """An RFC 3339 time as the daemon prints it (UTC, ms) -> seconds since the epoch."""
    from datetime import datetime
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module", autouse=True)
def module_sweep():
    """Imported by a test module: needs root, and removes labs of earlier runs whose pytest
    process died before its teardown."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, hugepages)", pytrace=False)
    sweep_dead_labs()


def lab_script_with(root: Path, edit) -> Path:
    """scripts/lab reads the appliances' configs from tests/configs/ beside itself and has no
    option to change them: a copy of it in root, beside copies of those configs that edit(cfg,
    appliance) changed in place, brings up the very same lab with them. `down` is the same."""
    import yaml
    (root / "scripts").mkdir(parents=True)
    (root / "tests" / "configs").mkdir(parents=True)
    script = root / "scripts" / "lab"
    shutil.copy2(LAB, script)
    for a in ("edge", "hub"):
        cfg = yaml.safe_load((REPO / "tests" / "configs" / f"{a}.yaml").read_text())
        edit(cfg, a)
        (root / "tests" / "configs" / f"{a}.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return script
