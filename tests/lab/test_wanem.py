"""sdwan-wanem, the lab's WAN emulator, measured from packets.

    t-wha-<tag>                     t-wem-<tag>                       t-whb-<tag>
    host A 10.99.0.1/24 --veth-- [A] sdwan-wanem [B] --veth-- host B 10.99.0.2/24

Direction up is A -> B (host A's echo requests), down is B -> A (the replies). The module
shares one emulator; every test starts from `clear` and `reset-counters`. netns.Lab removes
the namespaces (and with them the veths) and kills every process it started when the module
ends, passed or failed. Jitter is uniform in [-j, +j] (tests/lab/wanem/README.md).
"""

import json
import math
import os
import re
import signal
import socket
import statistics
import subprocess
import time
from pathlib import Path

import pytest

import netns

HOST_A, HOST_B = "10.99.0.1", "10.99.0.2"
IPERF_PORT = "5299"


def wanem_path() -> Path:
    if os.environ.get("SDWAN_WANEM"):
        return Path(os.environ["SDWAN_WANEM"])
    return netns.build_dir() / "tests/lab/wanem/sdwan-wanem"


def no_offloads(ns, ifname):
    """Kernel hosts hand AF_PACKET partial checksums and GSO super-frames otherwise; the
    emulator impairs per frame, so the tests send plain frames."""
    ns.run(["ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off"])


class Wanem:
    """One sdwan-wanem process in a namespace of a netns.Lab."""

    def __init__(self, lab, ns, a_if, b_if, name="wanem", seed=1, extra=()):
        self.lab, self.ns, self.name = lab, ns, name
        self.socket = lab.workdir / f"{name}.sock"
        self.log_file = lab.workdir / f"{name}.log"
        self.args = [str(wanem_path()), "--a", a_if, "--b", b_if, "--control", str(self.socket),
                     "--name", name, "--seed", str(seed), *extra]
        self.proc = None

    def start(self, timeout=10.0):
        exe = wanem_path()
        assert os.access(exe, os.X_OK), f"{exe} is not built (set SDWAN_BUILD or SDWAN_WANEM)"
        with open(self.log_file, "wb") as log:
            self.proc = self.ns.popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, \
                f"sdwan-wanem exited with {self.proc.returncode} while starting:\n{self.log()}"
            if self.socket.exists() and self.ctl("status", check=False).returncode == 0:
                return self
            time.sleep(0.05)
        raise AssertionError(f"sdwan-wanem did not answer `status` within {timeout} s:\n"
                             f"{self.log()}")

    def log(self):
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return "(no output)"

    def ctl(self, *words, check=True):
        """`sdwan-wanem ctl SOCKET WORDS...`: the client mode shell scripts use."""
        p = netns.run([str(wanem_path()), "ctl", str(self.socket), *words], check=False,
                      timeout=10)
        if check:
            assert p.returncode == 0 and p.stdout.strip() != "", \
                f"ctl {' '.join(words)} -> {p.returncode}: {p.stdout}{p.stderr}\n{self.log()}"
        return p

    def set(self, *words):
        out = self.ctl(*words).stdout.strip()
        assert out == "ok", f"{' '.join(words)} -> {out!r}"

    def status(self):
        return json.loads(self.ctl("status").stdout)

    def raw(self, payload: bytes, timeout=5.0) -> str:
        """Sends payload as is on a fresh connection and returns everything answered until the
        emulator closes it or goes quiet."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(self.socket))
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            chunks = []
            try:
                while True:
                    b = s.recv(65536)
                    if not b:
                        break
                    chunks.append(b)
            except socket.timeout:
                pass
        return b"".join(chunks).decode(errors="replace")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="module")
def wan(module_lab):
    lab = module_lab
    ha, em, hb = lab.netns("wha"), lab.netns("wem"), lab.netns("whb")
    a_host, a_em = lab.veth(ha, em)
    b_em, b_host = lab.veth(em, hb)
    lab.host(ha, a_host, f"{HOST_A}/24")
    lab.host(hb, b_host, f"{HOST_B}/24")
    no_offloads(ha, a_host)
    no_offloads(hb, b_host)
    w = Wanem(lab, em, a_em, b_em, name="wanem-test").start()
    w.ha, w.hb, w.em, w.a_host, w.b_host = ha, hb, em, a_host, b_host
    return w


@pytest.fixture(autouse=True)
def fresh(request):
    if "wan" not in request.fixturenames:
        yield
        return
    w = request.getfixturevalue("wan")
    assert w.alive(), f"sdwan-wanem is not running:\n{w.log()}"
    w.set("clear")
    w.set("reset-counters")
    yield
    assert w.alive(), f"sdwan-wanem died during the test:\n{w.log()}"


def ping_rtts(ns, dst, count, interval, wait=1.0):
    """RTTs in ms of the echo replies that came back, and how many requests went out."""
    p = ns.run(["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait), dst],
               check=False, timeout=count * interval + wait + 30)
    rtts = [float(m) for m in re.findall(r"time=([0-9.]+) ms", p.stdout)]
    m = re.search(r"(\d+) packets transmitted", p.stdout)
    assert m, f"ping printed no summary: {p.stdout}{p.stderr}"
    return rtts, int(m.group(1))


def ping_counts(ns, dst, count, interval):
    """(transmitted, received) of a quiet ping of count requests (with -w, ping would keep
    sending until count replies came back). Bounded: count * interval + 1 s + 30 s."""
    p = ns.run(["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1", dst],
               check=False, timeout=count * interval + 31)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", p.stdout)
    assert m, f"ping printed no summary: {p.stdout}{p.stderr}"
    return int(m.group(1)), int(m.group(2))


@pytest.fixture(scope="module")
def baseline_ms(wan):
    ping_rtts(wan.ha, HOST_B, 3, 0.05)  # ARP resolved both ways before measuring
    rtts, sent = ping_rtts(wan.ha, HOST_B, 50, 0.02)
    assert sent == 50 and len(rtts) == 50, f"{len(rtts)} of {sent} pings answered unimpaired"
    return statistics.median(rtts)


# --- no impairment --------------------------------------------------------------------------

def test_unimpaired_bridge_forwards_both_ways(wan, baseline_ms):
    rtts, sent = ping_rtts(wan.ha, HOST_B, 50, 0.02)
    assert len(rtts) == sent == 50
    assert statistics.median(rtts) < 2.0, f"baseline RTT median {statistics.median(rtts)} ms"
    rtts_b, sent_b = ping_rtts(wan.hb, HOST_A, 20, 0.02)
    assert len(rtts_b) == sent_b == 20
    st = wan.status()
    for d in ("up", "down"):
        c = st[d]["counters"]
        assert c["rx"] >= 70 and c["tx"] == c["rx"], f"{d}: {c}"
        assert c["dropped_loss"] == c["dropped_blackout"] == c["dropped_queue"] == 0
        assert st[d]["lateness_us"]["frames"] == c["tx"]
    print(f"baseline RTT median {baseline_ms:.3f} ms")


# --- delay ----------------------------------------------------------------------------------

@pytest.mark.parametrize("direction,expected_ms", [("up", 40.0), ("down", 40.0), ("both", 80.0)])
def test_delay_raises_rtt_by_the_set_amount(wan, baseline_ms, direction, expected_ms):
    wan.set("set", f"dir={direction}", "delay=40ms")
    st = wan.status()
    for d in ("up", "down"):
        want = 40.0 if direction in (d, "both") else 0.0
        assert st[d]["settings"]["delay_ms"] == want, st[d]["settings"]
    rtts, sent = ping_rtts(wan.ha, HOST_B, 50, 0.02)
    assert len(rtts) == sent == 50
    added = statistics.median(rtts) - baseline_ms
    print(f"dir={direction}: median RTT {statistics.median(rtts):.3f} ms, "
          f"added {added:.3f} ms (expected {expected_ms})")
    assert abs(added - expected_ms) <= 2.0, \
        f"delay dir={direction}: RTT rose by {added:.3f} ms, expected {expected_ms} +- 2"
    # The emulator's own record agrees: frames left well within the 2 ms the RTT allows.
    lat = wan.status()["up" if direction != "down" else "down"]["lateness_us"]
    assert lat["frames"] >= 50 and lat["p99"] < 2000, lat


def test_fractional_delay_in_microseconds(wan, baseline_ms):
    wan.set("set", "dir=both", "delay=2500us")
    rtts, _ = ping_rtts(wan.ha, HOST_B, 30, 0.02)
    added = statistics.median(rtts) - baseline_ms
    assert abs(added - 5.0) <= 1.0, f"2 x 2.5 ms added {added:.3f} ms"


# --- loss -----------------------------------------------------------------------------------

def test_loss_drops_the_set_share_of_pings(wan, baseline_ms):
    wan.set("set", "dir=up", "loss=10%")
    sent, received = ping_counts(wan.ha, HOST_B, 2000, 0.002)
    assert sent == 2000, f"ping sent only {sent} of 2000 within its deadline"
    lost = (sent - received) / sent
    print(f"loss=10%: {sent - received} of {sent} pings lost ({lost:.2%})")
    assert 0.07 <= lost <= 0.13, f"{lost:.2%} of pings lost, expected 10 +- 3 %"
    up = wan.status()["up"]["counters"]
    # Every lost ping is one dropped request (a lost ARP frame may add one or two).
    assert sent - received <= up["dropped_loss"] <= sent - received + 3, up
    assert up["rx"] == up["tx"] + up["dropped_loss"], up


def test_loss_in_the_down_direction_drops_replies(wan, baseline_ms):
    wan.set("set", "dir=down", "loss=50%")
    sent, received = ping_counts(wan.ha, HOST_B, 400, 0.005)
    lost = (sent - received) / sent
    assert 0.40 <= lost <= 0.60, f"{lost:.2%} lost with 50 % loss on the replies"
    st = wan.status()
    assert st["up"]["counters"]["dropped_loss"] == 0
    assert st["down"]["counters"]["dropped_loss"] >= sent - received


# --- blackout ------------------------------------------------------------------------------

def test_blackout_drops_everything_and_clear_restores(wan, baseline_ms):
    wan.set("blackout")
    st = wan.status()
    assert st["up"]["settings"]["blackout"] and st["down"]["settings"]["blackout"]
    sent, received = ping_counts(wan.ha, HOST_B, 20, 0.05)
    assert received == 0, f"{received} of {sent} pings crossed a blackout"
    up = wan.status()["up"]["counters"]
    assert up["dropped_blackout"] >= 20 and up["tx"] == 0, up
    wan.set("clear")
    sent, received = ping_counts(wan.ha, HOST_B, 20, 0.05)
    assert received == sent == 20, f"after clear only {received} of {sent} pings answered"


def test_blackout_of_one_direction_keeps_other_settings(wan, baseline_ms):
    wan.set("set", "dir=both", "delay=10ms")
    wan.set("blackout", "dir=down")
    sent, received = ping_counts(wan.ha, HOST_B, 10, 0.05)
    assert received == 0
    st = wan.status()
    assert st["up"]["counters"]["tx"] >= 10  # requests still crossed
    assert st["down"]["counters"]["dropped_blackout"] >= 10
    wan.set("set", "dir=down", "blackout=off")
    rtts, _ = ping_rtts(wan.ha, HOST_B, 10, 0.05)
    assert len(rtts) == 10 and abs(statistics.median(rtts) - baseline_ms - 20) <= 2


# --- rate -----------------------------------------------------------------------------------

def iperf3(wan, seconds):
    """An iperf3 TCP stream from host A to host B; returns the receiver's bits per second."""
    server = wan.hb.popen(["iperf3", "-s", "-1", "-B", HOST_B, "-p", IPERF_PORT],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    netns.wait_for(lambda: IPERF_PORT in wan.hb.run(["ss", "-Hltn"]).stdout, timeout=10,
                   interval=0.05, what="iperf3 server listening")
    p = wan.ha.run(["iperf3", "-c", HOST_B, "-p", IPERF_PORT, "-t", str(seconds), "-J"],
                   check=False, timeout=seconds + 30)
    server.wait(timeout=10)
    assert p.returncode == 0, f"iperf3 failed: {p.stdout[-2000:]}{p.stderr}"
    return json.loads(p.stdout)["end"]["sum_received"]["bits_per_second"]


def test_rate_caps_tcp_throughput(wan, baseline_ms):
    free = iperf3(wan, 2)
    wan.set("set", "dir=up", "rate=10mbit")
    assert wan.status()["up"]["settings"]["rate_bps"] == 10_000_000
    capped = iperf3(wan, 5)
    print(f"iperf3 A->B: {free / 1e6:.1f} Mbit/s unimpaired, {capped / 1e6:.2f} Mbit/s "
          f"at rate=10mbit")
    assert free > 50e6, f"unimpaired bridge carried only {free / 1e6:.1f} Mbit/s"
    assert 8.5e6 <= capped <= 10.5e6, f"rate=10mbit carried {capped / 1e6:.2f} Mbit/s"


# --- jitter ---------------------------------------------------------------------------------

def test_jitter_spreads_rtts_uniformly(wan, baseline_ms):
    """Uniform in [-j, +j] has standard deviation j/sqrt(3): 5.77 ms for j = 10 ms. The sample
    standard deviation of n uniform draws has a relative standard error of about
    sqrt(0.8/n)/2 (kurtosis 1.8), 3.2 % for n = 200, so +-15 % is more than 4.5 standard
    errors; a normal distribution with sigma = j would give 10 ms and fail. The range must fill
    most of the 2j band and stay inside it (plus 2 ms of slack for late release; the README's
    measurements also show single frames 1 to 5 ms late a few times in 10,000, the vCPU being
    descheduled, so one sample of the 200 may be up to 6 ms over, never two)."""
    j, d, n = 10.0, 20.0, 200
    wan.set("set", "dir=up", f"delay={d:g}ms", f"jitter={j:g}ms")
    rtts, sent = ping_rtts(wan.ha, HOST_B, n, 0.02)
    assert len(rtts) == sent == n
    sd = statistics.stdev(rtts)
    mean = statistics.mean(rtts) - baseline_ms
    lo, hi = min(rtts) - baseline_ms, max(rtts) - baseline_ms
    want = j / math.sqrt(3)
    print(f"jitter {j} ms: RTT sd {sd:.3f} ms (uniform: {want:.3f}), mean +{mean:.3f} ms, "
          f"range [{lo:.3f}, {hi:.3f}] ms")
    assert abs(sd - want) <= 0.15 * want, f"RTT sd {sd:.3f} ms, expected {want:.3f} +- 15 %"
    assert abs(mean - d) <= 1.5, f"mean added delay {mean:.3f} ms, expected {d} +- 1.5"
    second = sorted(rtts)[-2] - baseline_ms
    assert lo >= d - j - 0.5 and second <= d + j + 2.0 and hi <= d + j + 6.0, \
        f"range [{lo:.3f}, {hi:.3f}] ms, second largest {second:.3f} ms"
    assert hi - lo >= 1.6 * j, f"range {hi - lo:.3f} ms fills too little of the 2j band"


# --- control --------------------------------------------------------------------------------

@pytest.mark.parametrize("words,says", [
    (["frobnicate"], "unknown command 'frobnicate'"),
    (["set"], "set needs at least one of delay="),
    (["set", "delay=40"], "needs a unit: s, ms or us"),
    (["set", "loss=150%"], "above 100%"),
    (["set", "rate=10mbps"], "bit, kbit, mbit or gbit"),
    (["set", "dir=sideways", "delay=1ms"], "expected dir=up (A->B), dir=down (B->A) or dir=both"),
    (["set", "delay=1ms", "delay=2ms"], "given twice"),
    (["set", "colour=blue"], "unknown setting 'colour'"),
    (["blackout", "delay=5ms"], "takes only dir=up|down|both"),
    (["status", "please"], "status takes no arguments"),
])
def test_bad_commands_get_error_lines(wan, words, says):
    p = wan.ctl(*words, check=False)
    assert p.returncode == 1, f"{words}: exit {p.returncode}, {p.stdout!r}"
    line = p.stdout.strip()
    assert line.startswith("error: ") and says in line, f"{words}: {line!r}"
    assert "\n" not in line


def test_bad_input_on_the_socket_never_stops_the_emulator(wan, baseline_ms):
    wan.set("set", "dir=up", "delay=5ms")
    # Several commands on one connection, one reply line each, in order; CRLF accepted.
    out = wan.raw(b"status\r\nset delay=oops\n\nset dir=down delay=5ms\n").splitlines()
    assert len(out) == 4, out
    assert json.loads(out[0])["up"]["settings"]["delay_ms"] == 5.0
    assert out[1].startswith("error: delay:")
    assert out[2].startswith("error: empty command")
    assert out[3] == "ok"
    # A line longer than the limit is refused and the connection closed.
    out = wan.raw(b"set " + b"x" * 10000 + b"\n")
    assert out.startswith("error: command longer than 4096 bytes"), out[:200]
    # Binary junk, a half line and an abrupt close.
    assert wan.raw(bytes(range(256)) * 4 + b"\n").startswith("error:")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect(str(wan.socket))
        s.sendall(b"set delay=")
    assert wan.alive(), wan.log()
    # A failed command changed nothing; the emulator still forwards.
    st = wan.status()
    assert st["up"]["settings"]["delay_ms"] == 5.0 and st["down"]["settings"]["delay_ms"] == 5.0
    rtts, _ = ping_rtts(wan.ha, HOST_B, 10, 0.05)
    assert len(rtts) == 10 and abs(statistics.median(rtts) - baseline_ms - 10) <= 2


def test_control_socket_is_private_and_the_loop_runs_realtime(wan):
    assert (wan.socket.stat().st_mode & 0o777) == 0o600
    st = wan.status()
    assert st["realtime_priority"] == 10 and st["name"] == "wanem-test" and st["seed"] == 1, st
    policy = wan.em.run(["chrt", "-p", str(wan.proc.pid)]).stdout
    assert "SCHED_FIFO" in policy and "priority: 10" in policy, policy


def test_status_counters_move(wan, baseline_ms):
    st = wan.status()
    assert st["up"]["counters"]["rx"] == 0 and st["down"]["counters"]["tx"] == 0
    wan.set("set", "dir=up", "loss=30%")
    sent, received = ping_counts(wan.ha, HOST_B, 200, 0.005)
    st = wan.status()
    up, down = st["up"]["counters"], st["down"]["counters"]
    assert up["rx"] >= sent and up["rx"] == up["tx"] + up["dropped_loss"], up
    assert up["dropped_loss"] >= sent - received > 0, up
    assert down["rx"] >= received and down["tx"] == down["rx"], down
    assert up["rx_bytes"] >= 98 * sent  # 98-byte echo requests
    assert up["queued"] == 0 and down["queued"] == 0
    assert st["up"]["lateness_us"]["frames"] == up["tx"]
    assert st["up"]["settings"]["loss_pct"] == 30.0


# --- offloads -------------------------------------------------------------------------------

def test_partial_checksums_and_gso_frames_pass_through(wan, baseline_ms):
    """A kernel host with every offload on hands AF_PACKET partial checksums and TCP super-
    frames; the emulator forwards their offload metadata (PACKET_VNET_HDR), so TCP still works."""
    for ns, ifname in ((wan.ha, wan.a_host), (wan.hb, wan.b_host)):
        ns.run(["ethtool", "-K", ifname, "tx", "on", "tso", "on", "gso", "on"])
    try:
        bps = iperf3(wan, 1)
    finally:
        no_offloads(wan.ha, wan.a_host)
        no_offloads(wan.hb, wan.b_host)
    assert bps > 50e6, f"{bps / 1e6:.1f} Mbit/s with offloads on"
    assert wan.status()["up"]["counters"]["dropped_tx"] == 0


# --- process life ----------------------------------------------------------------------------

def test_sigterm_exits_zero_and_removes_the_socket(lab):
    a, em, b = lab.netns("wsa"), lab.netns("wse"), lab.netns("wsb")
    _, a_em = lab.veth(a, em)
    b_em, _ = lab.veth(em, b)
    w = Wanem(lab, em, a_em, b_em, name="wanem-sig", extra=["--realtime", "0"]).start()
    assert w.status()["realtime_priority"] == 0
    # A second emulator on the same socket is refused and leaves the first one serving.
    second = em.run(w.args, check=False)
    assert second.returncode == 1 and "another process listens" in second.stderr, second
    assert w.status()["name"] == "wanem-sig"
    os.kill(w.proc.pid, signal.SIGTERM)  # ip netns exec execs the emulator: same pid
    assert w.proc.wait(timeout=10) == 0, w.log()
    assert not w.socket.exists()
    assert "stopped" in w.log()
    # Start-up errors name the problem and exit 1.
    bad = em.run([str(wanem_path()), "--a", "nosuchif0", "--b", b_em, "--control",
                  str(w.socket)], check=False)
    assert bad.returncode == 1 and "interface nosuchif0 does not exist" in bad.stderr, bad
    assert not w.socket.exists()
    p = netns.run([str(wanem_path()), "ctl", str(w.socket), "status"], check=False)
    assert p.returncode == 1 and "cannot connect" in p.stderr, p
