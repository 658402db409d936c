"""sdwand as a service (issue 7): systemd readiness and watchdog over sd_notify, the unit file,
and start-up failures that exit non-zero with one clear line each.

One namespace with two veth pairs (LAN and one uplink, their far ends left alone): enough for
sdwand to start its dataplane; no peer answers, which the service part does not need.
"""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import netns

REPO = Path(__file__).resolve().parents[2]


def base_config(lan_if, up_if, key_file, workdir):
    return {
        "name": "svc",
        "role": "edge",
        "lan": {"port": f"af_packet:{lan_if}", "address": "192.168.10.1/24"},
        "uplinks": [{"name": "isp1", "port": f"af_packet:{up_if}", "address": "10.1.0.2/24",
                     "next_hop": "10.1.0.1"}],
        "peers": [{"name": "hub", "key_file": str(key_file), "endpoints": [{"address": "10.1.0.3"}],
                   "prefixes": ["192.168.20.0/24"]}],
        "esp": {"epoch_store": str(workdir / "svc.epochs")},
        "lcores": {"control": 0, "workers": [1]},
        "idle": "adaptive",
        "dpdk": {"hugepages": True, "memory_mb": 256},
    }


@pytest.fixture
def box(lab):
    ns = lab.netns("svc")
    far = lab.netns("far")
    lan_if, _ = lab.veth(ns, far)
    up_if, _ = lab.veth(ns, far)
    key_file = lab.workdir / "master.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    return {"lab": lab, "ns": ns, "config": base_config(lan_if, up_if, key_file, lab.workdir),
            "key_file": key_file}


def write_config(lab, config, name="svc"):
    d = netns.Daemon(lab, lab.namespaces[0], name, config)
    return d


def start_failure(daemon, env=None, wrap=None, timeout=60):
    """Runs sdwand with the daemon's config until it exits; returns (status, output lines)."""
    args = [str(netns.sdwand_path()), *netns.sdwand_args(daemon.config_file)]
    if wrap:
        args = wrap + args
    p = subprocess.run(daemon.ns.cmd(args), capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **(env or {})))
    return p.returncode, (p.stdout + p.stderr).splitlines()


def one_clear_error(lines, pattern):
    """Exactly one error line, and it says what pattern says."""
    errors = [line for line in lines if re.search(r"\berror:", line)]
    assert len(errors) == 1, f"expected one error line, got {len(errors)}:\n" + "\n".join(lines)
    assert re.search(pattern, errors[0]), f"error line does not match {pattern!r}: {errors[0]}"
    return errors[0]


def test_missing_port_exits_with_one_clear_line(box):
    cfg = dict(box["config"], uplinks=[dict(box["config"]["uplinks"][0], port="af_packet:nosuch9")])
    d = write_config(box["lab"], cfg)
    rc, lines = start_failure(d)
    assert rc != 0
    line = one_clear_error(lines, r"port isp1 \(af_packet:nosuch9\): interface nosuch9 does not exist")
    print(line)
    # Refused before EAL started: none of DPDK's probe errors reach the operator.
    assert not any("vdev_probe" in x or "EAL:" in x for x in lines), "\n".join(lines)


def test_unreadable_key_file_exits_with_one_clear_line(box):
    os.chmod(box["key_file"], 0o644)
    d = write_config(box["lab"], box["config"])
    rc, lines = start_failure(d)
    assert rc != 0
    print(one_clear_error(lines, r"peer hub: .*master.key: mode 0644 is too open.*chmod 600"))
    os.chmod(box["key_file"], 0o000)
    box["key_file"].rename(box["key_file"].with_suffix(".gone"))
    rc, lines = start_failure(d)
    assert rc != 0
    print(one_clear_error(lines, r"peer hub: .*master.key"))


def test_socket_in_use_exits_with_one_clear_line(box, sdwand):
    first = sdwand(box["lab"], box["ns"], "svc", box["config"])
    second_cfg = dict(box["config"], dpdk={"hugepages": True, "memory_mb": 256,
                                          "file_prefix": first.file_prefix + "b"},
                      mgmt={"socket": str(first.socket)})
    d = write_config(box["lab"], second_cfg, name="svc2")
    rc, lines = start_failure(d)
    assert rc != 0
    print(one_clear_error(lines, r"socket .* is in use by a running sdwand"))
    assert first.running(), "the second daemon disturbed the first"
    first.stop()


def test_no_hugepages_exits_with_one_clear_line(box):
    """The kernel's hugepage figures are bind-mounted over with an empty pool in a private
    mount namespace, so the host's real pool (which other tests use) stays as it is."""
    fake = box["lab"].workdir / "meminfo"
    text = Path("/proc/meminfo").read_text()
    fake.write_text(re.sub(r"^(HugePages_(Total|Free):\s+)\d+", r"\g<1>0", text, flags=re.M))
    d = write_config(box["lab"], box["config"])
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f'mount --bind {fake} /proc/meminfo && exec "$@"', "sh"]
    rc, lines = start_failure(d, wrap=wrap)
    assert rc != 0
    print(one_clear_error(lines, r"no free hugepages: reserve some"))


class NotifySocket:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[tuple[float, str]] = []

    def read(self, until, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                break
            self.messages.append((time.monotonic(), data.decode()))
            if until(data.decode()):
                return data.decode()
        return None

    def close(self):
        self.sock.close()


def test_sd_notify_ready_watchdog_status_and_stopping(box):
    lab = box["lab"]
    ns_sock = NotifySocket(lab.workdir / "notify.sock")
    try:
        d = write_config(lab, box["config"])
        env = dict(os.environ, NOTIFY_SOCKET=str(ns_sock.path), WATCHDOG_USEC="400000")
        with open(d.log_file, "wb") as log:
            d.proc = d.ns.popen([str(netns.sdwand_path()), *netns.sdwand_args(d.config_file)],
                                stdout=log, stderr=subprocess.STDOUT, env=env)
        ready = ns_sock.read(lambda m: "READY=1" in m, timeout=60)
        assert ready, f"no READY=1 within 60 s; got {ns_sock.messages}\n{d.log()}"
        assert re.search(r"STATUS=edge svc: \d+/1 path\(s\) up", ready), ready
        # Ready means serving: the management socket answers at once.
        assert d.ctl("show", "version", check=False).returncode == 0, d.log()
        t0 = time.monotonic()
        ns_sock.read(lambda m: False, timeout=1.2)
        pings = [t for t, m in ns_sock.messages if "WATCHDOG=1" in m and t >= t0]
        # Half of 400 ms: about 6 pings in 1.2 s; fewer than 3 means the loop is not pinging.
        assert len(pings) >= 3, f"{len(pings)} watchdog pings in 1.2 s: {ns_sock.messages}"
        os.kill(d.proc.pid, signal.SIGTERM)
        stopping = ns_sock.read(lambda m: "STOPPING=1" in m, timeout=20)
        assert stopping, f"no STOPPING=1 after SIGTERM: {ns_sock.messages}"
        assert d.proc.wait(timeout=20) == 0, d.log()
    finally:
        ns_sock.close()


def test_without_notify_socket_nothing_is_sent(box, sdwand):
    """Started by hand (no NOTIFY_SOCKET) the daemon runs as before."""
    d = sdwand(box["lab"], box["ns"], "svc", box["config"])
    assert "sd_notify failed" not in d.log(tail=200)
    d.stop()


def render_unit(tmp: Path) -> Path:
    unit = (REPO / "scripts/systemd/sdwand@.service").read_text()
    out = tmp / "sdwand@edge.service"
    out.write_text(unit.replace("@BINDIR@", str(netns.sdwand_path().parent)))
    return out


def test_unit_file_verifies_and_is_type_notify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.fail("systemd-analyze is not installed (Debian: systemd)", pytrace=False)
    unit = render_unit(tmp_path)
    text = unit.read_text()
    assert re.search(r"^Type=notify$", text, re.M)
    assert re.search(r"^WatchdogSec=\d+s$", text, re.M)
    assert re.search(r"^ExecReload=", text, re.M)
    p = subprocess.run([tool, "verify", str(unit)], capture_output=True, text=True)
    problems = [x for x in (p.stdout + p.stderr).splitlines() if str(unit) in x or "sdwand@" in x]
    assert p.returncode == 0 and not problems, p.stdout + p.stderr
    # The check can fail: a broken copy is reported.
    bad = tmp_path / "broken" / "sdwand@edge.service"
    bad.parent.mkdir()
    bad.write_text(text.replace("Type=notify", "Type=notifyy"))
    p = subprocess.run([tool, "verify", str(bad)], capture_output=True, text=True)
    assert "notifyy" in p.stdout + p.stderr


def test_example_config_passes_check_config(tmp_path):
    key = tmp_path / "master.key"
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    text = (REPO / "scripts/systemd/edge.example.yaml").read_text()
    text = text.replace("/etc/sdwan/master.key", str(key))
    text = text.replace("/var/lib/sdwan/edge.epochs", str(tmp_path / "edge.epochs"))
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(text)
    p = subprocess.run([str(netns.sdwand_path()), "--check-config", str(cfg)], capture_output=True,
                       text=True)
    assert p.returncode == 0 and "OK" in p.stdout, p.stdout + p.stderr
