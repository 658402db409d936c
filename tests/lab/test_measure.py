"""Live path measurement in the lab (issue #5), judged from outside the appliances.

Every test brings up (or shares) a lab of its own under a private prefix with scripts/lab and
takes it down in a finalizer, failed or not; impairments are cleared after every test and the
paths are let settle before the next one. Traffic runs only inside the lab's namespaces. The
shared lab runs without the edge's application checks (see without_apps): the only traffic on
its paths is the probes and what a test sends.

The tests and what their tolerances rest on:

- The emulator (tests/lab/wanem/README.md "Precision"): with its default SCHED_FIFO it applies
  a delay to within EMU_P99_MS (0.133 ms, the worst 99th percentile of one-way excess it
  measured, delay 40 ms, busy machine) per direction, with a few frames per 10,000 late by 1
  to 5 ms. Its jitter is U uniform in [-jitter, +jitter] per frame, independently, on top of
  the delay (clamped at 0, so the tests keep delay >= jitter). A round trip crosses it twice,
  so it contributes at most 2 x EMU_P99_MS = 0.27 ms to an RTT figure, inside the issue's
  +-3 ms. Each impairment test also reads the emulator's own lateness record afterwards and
  fails, saying so, if the emulator missed its documented precision (then the daemon cannot
  be judged).
- Impairments act per direction (`set dir=up|down|both`, up = edge -> hub, scripts/lab's
  default up). `delay=30ms` on one direction adds exactly 30 ms to a round trip; dir=both
  would add 60.
- Probes every 100 ms, multiplier 3, hold_up 3, damping 5 flaps in 60 s held 1 s: the
  defaults of control/measure/path_state.hpp, which tests/configs/*.yaml keep.

1. delay 30 ms (dir=up) on isp2: the edge's isp2:hub `rtt_ms` rises by 30 +- 3 ms within 2 s
   of the command and stays there; isp1:hub and isp3:hub stay within +-3 ms. rtt_ms is an
   EWMA with gain 1/4 (estimator.hpp), so a 30 ms step is within 3 ms (10 %) after
   ln(0.1)/ln(3/4) = 8.0, i.e. 9 samples: 0.9 s at 100 ms, well inside the 2 s.
2. 5 % loss on isp3, up then down: `loss_fwd_pct` (then `loss_rev_pct`) 5 +- 2 over at least
   2,000 probes, the other direction below 1 %. The binomial standard deviation over 2,000
   probes is sqrt(.05 * .95 / 2000) = 0.49 %, so +-2 % is 4 sigma. 2,000 probes at 100 ms
   take 200 s, so this test runs its own lab probing every 10 ms with a 24 s window (see
   fast_lab: scripts/lab has no config option, so it runs a copy of scripts/lab whose
   tests/configs/ carry a `paths:` section). Both ends are checked: the hub's view of the same
   path has the directions the other way round.
3. jitter 10 ms (with delay 20 ms, dir=up) on isp1: `jitter_ms` is RFC 3550's interarrival
   jitter of the RTT samples, J += (|D| - J) / 16 with D the difference of consecutive RTTs
   (estimator.hpp). With U_i uniform in [-J0, J0] added to one direction of every probe
   independently, D = U_i - U_{i-1} has the triangular density (2 J0 - |d|) / (4 J0^2) on
   [-2 J0, 2 J0], so E|D| = 2 J0 / 3 = 6.667 ms for J0 = 10 ms (the reading of RFC 3550's
   estimator converges to E|D|, not to J0 nor to the standard deviation J0 / sqrt(3)). The
   test averages 20 readings taken every 0.5 s after a 6 s warm-up; how far that average may
   stray is computed by a Monte Carlo of exactly this procedure in the test itself (its 0.1 %
   and 99.9 % quantiles: about 5.2 .. 8.2 ms), widened by the jitter the lab shows with no
   impairment (measured just before; |D + E| is within |D| +- |E|) and the emulator's
   precision.
4. blackout isp1: `down` with reason "missed 3 probes" within interval x multiplier + one
   interval (400 ms, docs/measurement.md's worst case: M x I + the slack cap I/2, and I/2 for
   the timer tick and scheduling) of the command, never before (multiplier - 1) x interval.
   Times are the event's own timestamp (`show events`, RFC 3339 ms) against the wall clock
   around the command to the emulator's control socket: the emulator acted somewhere between
   sending it and its reply, so a lower bound is checked from the send and an upper bound from
   the reply (neither can then blame the daemon for the command's own latency). clear: `up`
   with reason "3 good probes" between (hold_up - 1) and hold_up intervals after the clear, +
   the slack cap I/2 (path_state.hpp: a reply up to I/2 late still counts as good, so the
   hold_up-th may come that late). Blackouts in a row: the 5th up -> down within 60 s is
   followed at once by `damped` (reason names the flaps), the path stays damped for the 1 s
   hold although its probes come back, then goes up at the first timer tick after the hold
   (ticks every I/5, control/app/appliance.cpp), allowing the same I/2 of scheduling.
5. irtt (an independent RTT tool) from lan-a to an irtt server in lan-b through the overlay,
   isp2 and isp3 blacked out so the data takes isp1 (checked on the paths' data counters):
   with no impairment its median RTT is within 1 ms of the path's `rtt_p50_ms` (the LAN hops
   and hosts add a fraction of a millisecond); with
   delay 20 ms and jitter 10 ms on isp1 its mean and median RTT agree with the path's RTT
   within 3 ms, and its round-trip IPDV mean (the mean of |D| over consecutive packets, the
   same E|D| = 2 J0 / 3) agrees with the path's `jitter_ms` within the Monte Carlo bounds of
   both procedures, widened by each one's no-impairment noise.
6. Nothing crosses an ISP in the clear: a few seconds captured on both links of every ISP;
   every frame is ARP or ESP in UDP 4500 (SPI non-zero, lengths consistent, ICV good with the
   lab's key log), the decrypted probes carry STAMP's error estimate 0x4c01 (so the pattern
   looked for exists), the expected number of probes was seen, and no frame contains a STAMP
   test or reflected packet in the clear (a detector that is shown to catch the real probes'
   plaintext put back into a frame).
"""

from __future__ import annotations

import csv
import functools
import json
import math
import os
import random
import re
import signal
import socket
import statistics
import struct
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from labkit import BUILD, ISPS, LAB, TAG, Tcpdump, lab_cmd, require, lab_script_with, module_sweep, wall  # noqa: F401 (module_sweep: autouse fixture)

SDWANCTL = Path(os.environ.get("SDWANCTL", Path(BUILD) / "control" / "cli" / "sdwanctl"))
HOST_A, HOST_B = "192.168.10.2", "192.168.20.2"
IRTT_PORT = 2112

# The path state machine's defaults (control/measure/path_state.hpp; tests/configs keep them).
INTERVAL_S = 0.100
MULTIPLIER = 3
HOLD_UP = 3
DAMP_FLAPS = 5
DAMP_WINDOW_S = 60.0
DAMP_HOLD_S = 1.0
SLACK_CAP_S = INTERVAL_S / 2    # path_state.hpp: slack = min(I/2, I/4 + 4 x jitter)
TIMER_TICK_S = INTERVAL_S / 5   # the state machines' timers run with the counter reads (appliance.cpp)

# The emulator's precision (tests/lab/wanem/README.md): worst one-way 99th percentile excess.
EMU_P99_MS = 0.133
EMU_LATENESS_LIMIT_US = 1000.0  # its p99 lateness during a test must stay below this
RTT_TOL_MS = 3.0                # the issue's +-3 ms
SETTLED_MS = 1.0                # a path has settled when rtt_ms - rtt_min_ms and jitter_ms are below this

# Loss test: its own lab, probes every 10 ms, a window holding > 2,000 probes.
FAST_PATHS = {"probe_interval": 10, "window_s": 24}
LOSS_PCT, LOSS_TOL = 5.0, 2.0
LOSS_OTHER_MAX = 1.0
LOSS_MIN_PROBES = 2000

JITTER_MS = 10.0
JITTER_DELAY_MS = 20.0
WARMUP_S = 6.0                  # 60 samples: (15/16)^60 = 2 % of the start value left
READ_EVERY_S = 0.5
READS = 20

ESP_PORT = 4500
NH_OVERLAY = 253
STAMP_ERR_EST = 0x4C01          # dataplane/overlay/stamp.hpp kStampErrEst: S=0, Z=1, scale 12, mult 1
# A STAMP packet in the clear, wherever it sits in a frame: a test packet is the error estimate
# followed by 30 zero bytes (MBZ) and our 32-byte extension (zero in a test packet); a reflected
# packet has its error estimate + 2 MBZ bytes and 24 bytes later the sender's, + 2 MBZ bytes.
CLEAR_TEST = re.compile(re.escape(struct.pack("!H", STAMP_ERR_EST) + bytes(30)))
CLEAR_REFLECTED = re.compile(re.escape(struct.pack("!H", STAMP_ERR_EST) + bytes(2)) + b".{20}"
                             + re.escape(struct.pack("!H", STAMP_ERR_EST) + bytes(2)), re.DOTALL)


# The prefix shape the sweep recognises (L<pid>x<n>-), with numbers no other module uses.
_counter = iter(range(700, 800))


# --- the lab -----------------------------------------------------------------------------

class MeasureLab:
    """A lab made by scripts/lab (or a copy of it), read through sdwanctl and its emulators'
    control sockets."""

    def __init__(self, prefix: str, status: dict, script: Path = LAB) -> None:
        self.prefix, self.status, self.script = prefix, status, script

    def ns(self, role: str) -> str:
        return self.prefix + role

    def x(self, role: str, *cmd: str, timeout: float = 60, check: bool = False) -> subprocess.CompletedProcess:
        p = subprocess.run(["ip", "netns", "exec", self.ns(role), *cmd], capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} in {role} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    def popen(self, role: str, *cmd: str, out: Path) -> subprocess.Popen:
        with open(out, "wb") as f:
            return subprocess.Popen(["ip", "netns", "exec", self.ns(role), *cmd], stdin=subprocess.DEVNULL,
                                    stdout=f, stderr=subprocess.STDOUT, start_new_session=True)

    # sdwanctl straight on the socket: `scripts/lab ctl` costs a Python start-up (~0.2 s) per call.
    def show(self, appliance: str, what: str):
        sock = self.status["appliances"][appliance]["socket"]
        cmd = [str(SDWANCTL), "--socket", sock, "show", what, "--json"]
        for attempt in range(50):
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
                break
            except (PermissionError, FileNotFoundError, OSError) as e:
                # A build beside us is relinking sdwanctl (not executable for a moment): wait.
                if attempt == 49:
                    raise AssertionError(f"cannot run {SDWANCTL}: {e}") from None
                time.sleep(0.1)
        if p.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} -> {p.returncode}: {p.stdout}{p.stderr}")
        return json.loads(p.stdout)

    def paths(self, appliance: str = "edge") -> dict[str, dict]:
        return {p["name"]: p for p in self.show(appliance, "paths")}

    def events(self, appliance: str = "edge") -> list[dict]:
        return self.show(appliance, "events")

    def impair(self, isp: str, *words: str) -> None:
        """scripts/lab impair ispN WORDS, as an operator types it."""
        out = lab_cmd(self.prefix, "impair", isp, *words, script=self.script).stdout.strip()
        assert out == "ok", f"scripts/lab impair {isp} {' '.join(words)}: {out}"

    def wanem(self, isp: str, line: str) -> tuple[str, float, float]:
        """One command straight to the emulator's control socket (what scripts/lab impair sends,
        without its start-up time), for steps that are timed. Returns (reply, wall clock just
        before sending, wall clock when the reply came): the change happened in between."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.status["isps"][isp]["control"])
            f = s.makefile("rb")
            t0 = time.time()
            s.sendall(line.encode() + b"\n")
            reply = f.readline().decode().strip()
            t1 = time.time()
        assert reply == "ok" or reply.startswith("{"), f"{isp} emulator: {line!r} -> {reply!r}"
        return reply, t0, t1

    def emu_status(self, isp: str) -> dict:
        return json.loads(self.wanem(isp, "status")[0])

    def reset_isps(self) -> None:
        for isp in ISPS:
            self.wanem(isp, "clear")
            self.wanem(isp, "reset-counters")

    def check_emulator_precise(self, isp: str) -> dict:
        """The emulator kept its documented precision since its counters were reset: else a
        figure cannot be blamed on the daemon."""
        st = self.emu_status(isp)
        for d in ("up", "down"):
            late = st[d]["lateness_us"]
            assert late["frames"] == 0 or late["p99"] <= EMU_LATENESS_LIMIT_US, (
                f"the {isp} emulator was late by {late['p99']:.0f} us at the 99th percentile ({d}; mean "
                f"{late['mean']:.0f}, max {late['max']:.0f} us), beyond its documented precision: "
                "the lab, not the daemon, is off")
        return st

    def settle(self, timeout: float = 20) -> dict[str, dict]:
        """Waits until every path of both appliances is up with figures back at their
        no-impairment level (the previous test's impairment out of the smoothed values)."""
        deadline = time.monotonic() + timeout
        while True:
            views = {a: self.paths(a) for a in ("edge", "hub")}
            bad = [f"{a} {n}: {p.get('state')} rtt {p.get('rtt_ms')} min {p.get('rtt_min_ms')} "
                   f"jitter {p.get('jitter_ms')}"
                   for a, ps in views.items() for n, p in ps.items()
                   if p.get("state") != "up" or None in (p.get("rtt_ms"), p.get("rtt_min_ms"), p.get("jitter_ms"))
                   or p["rtt_ms"] - p["rtt_min_ms"] > SETTLED_MS or p["jitter_ms"] > SETTLED_MS]
            if not bad and len(views["edge"]) == len(ISPS):
                return views["edge"]
            if time.monotonic() > deadline:
                raise AssertionError(f"paths did not settle within {timeout} s: {bad or views}")
            time.sleep(0.2)


def up_lab(prefix: str, script: Path = LAB) -> MeasureLab:
    lab_cmd(prefix, "up", script=script)
    status = json.loads(lab_cmd(prefix, "status", "--json", script=script).stdout)
    assert status["up"], status
    return MeasureLab(prefix, status, script)


def without_apps(cfg: dict, _appliance: str) -> None:
    """The edge's application check (web-b, an HTTP GET every 10 s from its host stack, docs/apps.md)
    is data on a path: with a path blacked out it can trigger the early-down rule ("data and probes
    stopped for ...", as soon as I + slack after the blackout) before the missed-probe rule the
    blackout test times. Without it, nothing but the tests' own traffic crosses the paths."""
    cfg.pop("apps", None)


@pytest.fixture(scope="module")
def main_lab(tmp_path_factory):
    """The default lab (tests/configs as they are: probes every 100 ms) without the edge's
    application checks, brought up by a copy of scripts/lab (labkit.lab_script_with)."""
    script = lab_script_with(tmp_path_factory.mktemp("measure-main") / "tree", without_apps)
    prefix = f"L{TAG}x{next(_counter)}-"
    try:
        lab = up_lab(prefix, script)
        cfg = yaml.safe_load(Path(lab.status["appliances"]["edge"]["config"]).read_text())
        assert "apps" not in cfg, f"the lab's edge config still has application checks: {cfg['apps']}"
        yield lab
    finally:
        lab_cmd(prefix, "down", script=script, check=False)


def retry_if_lab_imprecise(test):
    """A test whose emulator missed its documented precision (check_emulator_precise) judged
    the lab, not the daemon: it runs once more on a clean lab; a second miss fails."""
    @functools.wraps(test)
    def run(**kw):  # pytest passes fixtures by name
        try:
            return test(**kw)
        except AssertionError as e:
            if "the lab, not the daemon, is off" not in str(e):
                raise
            print(f"emulator imprecise, running the test once more: {e}")
            lab = kw.get("lab") or kw.get("fast_lab")
            lab.reset_isps()
            lab.settle()
            return test(**kw)
    return run


@pytest.fixture
def lab(main_lab):
    """main_lab with no impairment, emulator counters zeroed and paths settled; impairments
    cleared again afterwards, whatever happened."""
    main_lab.reset_isps()
    main_lab.settle()
    try:
        yield main_lab
    finally:
        try:
            main_lab.reset_isps()
        except Exception:  # noqa: BLE001 - the lab may be what failed; its finalizer removes it
            pass


def fast_lab_script(root: Path) -> Path:
    """scripts/lab reads the appliances' configs from tests/configs/ beside itself (README: it
    rewrites only the socket, file prefix and keys) and has no option to change them. A copy
    of it in root, with copies of those configs that add FAST_PATHS as their `paths:`
    section, brings up the very same lab with faster probes; `down` is the same either way."""
    return lab_script_with(root, lambda cfg, _appliance: cfg.update(paths=dict(FAST_PATHS)))


@pytest.fixture
def fast_lab(tmp_path):
    script = fast_lab_script(tmp_path / "tree")
    prefix = f"L{TAG}x{next(_counter)}-"
    try:
        lab = up_lab(prefix, script)
        cfg = yaml.safe_load(Path(lab.status["appliances"]["edge"]["config"]).read_text())
        assert cfg.get("paths") == FAST_PATHS, f"the lab's edge config has no fast paths section: {cfg}"
        yield lab
    finally:
        lab_cmd(prefix, "down", check=False)


def poll(lab: MeasureLab, seconds: float, every: float, appliance: str = "edge") -> list[tuple[float, dict]]:
    """(time since start, show paths) every `every` s for `seconds` s."""
    out = []
    t0 = time.monotonic()
    while True:
        out.append((time.monotonic() - t0, lab.paths(appliance)))
        if time.monotonic() - t0 >= seconds:
            return out
        time.sleep(max(0.0, every - (time.monotonic() - t0 - out[-1][0])))


# --- jitter: the expected value and its spread ---------------------------------------------

def rfc3550_reading_avg(rng: random.Random, j0: float, warm: int, reads: int, every: int) -> float:
    """One run of test 3's procedure on simulated RTTs (base + U, U uniform in [-j0, j0]):
    RFC 3550's estimator from 0 over `warm` samples, then the mean of `reads` readings taken
    every `every` samples."""
    j, prev = 0.0, rng.uniform(-j0, j0)
    total = 0.0
    for i in range(warm + reads * every):
        x = rng.uniform(-j0, j0)
        j += (abs(x - prev) - j) / 16
        prev = x
        if i >= warm and (i - warm + 1) % every == 0:
            total += j
    return total / reads


def mean_abs_ipdv(rng: random.Random, j0: float, n: int) -> float:
    """irtt's round-trip IPDV mean over n packets with the same U."""
    prev, s = rng.uniform(-j0, j0), 0.0
    for _ in range(n - 1):
        x = rng.uniform(-j0, j0)
        s += abs(x - prev)
        prev = x
    return s / (n - 1)


def quantiles(v: list[float], lo: float = 0.001, hi: float = 0.999) -> tuple[float, float]:
    v = sorted(v)
    return v[int(lo * (len(v) - 1))], v[int(math.ceil(hi * (len(v) - 1)))]


@functools.lru_cache(maxsize=None)
def path_jitter_band(j0: float, trials: int = 3000) -> tuple[float, float]:
    """0.1 % .. 99.9 % of the average of READS readings (test 3's procedure)."""
    rng = random.Random(5)
    warm = round(WARMUP_S / INTERVAL_S)
    every = round(READ_EVERY_S / INTERVAL_S)
    band = quantiles([rfc3550_reading_avg(rng, j0, warm, READS, every) for _ in range(trials)])
    # The derivation itself: E|D| = 2 j0 / 3, checked on 200,000 simulated differences.
    sim = statistics.fmean(abs(rng.uniform(-j0, j0) - rng.uniform(-j0, j0)) for _ in range(200_000))
    assert abs(sim - 2 * j0 / 3) < 0.01 * j0, f"E|D| simulated {sim:.3f}, derived {2 * j0 / 3:.3f}"
    return band


# --- 2. loss (first: its own lab runs before the shared one is up) -----------------------

@retry_if_lab_imprecise
def test_loss_5pct_in_each_direction_on_isp3(fast_lab):
    lab = fast_lab
    p0 = lab.paths()["isp3:hub"]["probes_sent"]
    time.sleep(1.0)
    rate = lab.paths()["isp3:hub"]["probes_sent"] - p0
    assert 80 <= rate <= 120, f"the fast lab sent {rate} probes in 1 s on isp3:hub, expected 100 (10 ms)"
    window = FAST_PATHS["window_s"]
    for direction in ("up", "down"):
        lab.reset_isps()
        lab.impair("isp3", f"dir={direction}", f"loss={LOSS_PCT:g}%")
        # The whole window must hold probes sent under this impairment only.
        time.sleep(window + 0.5)
        edge, hub = lab.paths()["isp3:hub"], lab.paths("hub")["isp3:edge"]
        emu = lab.check_emulator_precise("isp3")[direction]["counters"]
        real = 100.0 * emu["dropped_loss"] / max(1, emu["rx"])
        lost, kept = ("loss_fwd_pct", "loss_rev_pct") if direction == "up" else ("loss_rev_pct", "loss_fwd_pct")
        # The hub sees the same path the other way round.
        hub_lost, hub_kept = kept, lost
        print(f"\n[loss {direction}] emulator dropped {real:.2f} % of {emu['rx']} frames; edge fwd "
              f"{edge['loss_fwd_pct']} rev {edge['loss_rev_pct']} ({edge.get('window_samples')} replies in "
              f"window); hub fwd {hub['loss_fwd_pct']} rev {hub['loss_rev_pct']} ({hub.get('window_samples')})")
        for who, p, lo, ke in (("edge isp3:hub", edge, lost, kept), ("hub isp3:edge", hub, hub_lost, hub_kept)):
            assert "window_samples" in p, f"{who}: show paths has no window_samples: {p}"
            assert p["window_samples"] >= LOSS_MIN_PROBES, (
                f"{who}: only {p['window_samples']} replies in the {window} s window, fewer than "
                f"{LOSS_MIN_PROBES}: {p}")
            assert p[lo] is not None and abs(p[lo] - LOSS_PCT) <= LOSS_TOL, (
                f"{who}, {LOSS_PCT:g} % loss {direction}: {lo} = {p[lo]}, expected {LOSS_PCT:g} +- {LOSS_TOL:g} "
                f"(the emulator dropped {real:.2f} % of that direction's frames)")
            assert p[ke] is not None and p[ke] < LOSS_OTHER_MAX, (
                f"{who}, loss only {direction}: {ke} = {p[ke]}, expected below {LOSS_OTHER_MAX:g}")


# --- 1. delay -------------------------------------------------------------------------------

@retry_if_lab_imprecise
def test_delay_30ms_on_isp2_raises_its_rtt_by_30ms_within_2s(lab):
    base = {n: statistics.fmean(r[1][n]["rtt_ms"] for r in poll(lab, 0.5, 0.1)) for n in lab.paths()}
    hub_base = lab.paths("hub")["isp2:edge"]["rtt_ms"]
    _, t_cmd, _ = lab.wanem("isp2", "set dir=up delay=30ms")
    t_start = time.monotonic() - (time.time() - t_cmd)  # the command, on the monotonic clock
    series = []
    while time.monotonic() - t_start < 3.0:
        series.append((time.monotonic() - t_start, lab.paths()))
        time.sleep(0.005)  # sdwanctl takes ~10 ms: a reading every ~15 ms
    delta = [(t, {n: v[n]["rtt_ms"] - base[n] for n in base}) for t, v in series]
    within = [t for t, d in delta if abs(d["isp2:hub"] - 30.0) <= RTT_TOL_MS]
    trace = ", ".join(f"{t:.2f}s:{d['isp2:hub']:+.1f}" for t, d in delta[::5])
    print(f"\n[delay] baseline rtt_ms {base}; isp2:hub within 30+-3 after "
          f"{within[0] if within else float('nan'):.2f} s; final delta {delta[-1][1]}")
    assert within and within[0] <= 2.0, f"isp2:hub rtt_ms - baseline never within 30 +- 3 ms by 2 s: {trace}"
    after = [(t, d["isp2:hub"]) for t, d in delta if t >= within[0]]
    assert all(abs(x - 30.0) <= RTT_TOL_MS for _, x in after), f"isp2:hub left 30 +- 3 ms again: {after}"
    for n in ("isp1:hub", "isp3:hub"):
        worst = max((abs(d[n]) for _, d in delta), default=0)
        assert worst <= RTT_TOL_MS, f"{n} moved by {worst:.2f} ms with the delay on isp2"
    hub = lab.paths("hub")["isp2:edge"]["rtt_ms"] - hub_base
    assert abs(hub - 30.0) <= RTT_TOL_MS, f"the hub's isp2:edge rtt_ms rose by {hub:.2f} ms"
    lab.check_emulator_precise("isp2")


# --- 3. jitter --------------------------------------------------------------------------------

def baseline_jitter(lab: MeasureLab, path: str, appliance: str = "edge", seconds: float = 2.0) -> float:
    """The highest jitter_ms the path shows with no impairment over a few seconds: the lab's
    own noise (probe stamping, scheduling, the emulator at delay 0)."""
    return max(v[path]["jitter_ms"] for _, v in poll(lab, seconds, 0.2, appliance))


@retry_if_lab_imprecise
def test_jitter_10ms_on_isp1_matches_rfc3550_on_the_rtt(lab):
    lo, hi = path_jitter_band(JITTER_MS)
    expected = 2 * JITTER_MS / 3
    b_edge = baseline_jitter(lab, "isp1:hub")
    b_hub = baseline_jitter(lab, "isp1:edge", "hub")
    base = lab.paths()["isp1:hub"]
    lab.impair("isp1", "dir=up", f"delay={JITTER_DELAY_MS:g}ms", f"jitter={JITTER_MS:g}ms")
    time.sleep(WARMUP_S)
    edge_reads, hub_reads, rtt_reads = [], [], []
    for _ in range(READS):
        t = time.monotonic()
        e, h = lab.paths()["isp1:hub"], lab.paths("hub")["isp1:edge"]
        edge_reads.append(e["jitter_ms"])
        hub_reads.append(h["jitter_ms"])
        rtt_reads.append(e["rtt_ms"])
        time.sleep(max(0.0, READ_EVERY_S - (time.monotonic() - t)))
    last = lab.paths()["isp1:hub"]
    lab.check_emulator_precise("isp1")
    emu = 2 * EMU_P99_MS
    edge_avg, hub_avg = statistics.fmean(edge_reads), statistics.fmean(hub_reads)
    print(f"\n[jitter] expected E|D| {expected:.3f} ms, Monte Carlo band of the average {lo:.2f} .. {hi:.2f}; "
          f"baseline edge {b_edge:.3f} hub {b_hub:.3f}; edge avg {edge_avg:.3f} hub avg {hub_avg:.3f}; "
          f"fwd {last.get('jitter_fwd_ms')} rev {last.get('jitter_rev_ms')}; rtt avg "
          f"{statistics.fmean(rtt_reads) - base['rtt_ms']:+.2f} ms, p95 {last['rtt_p95_ms'] - base['rtt_ms']:+.2f} ms")
    for who, avg, b, reads in (("edge isp1:hub", edge_avg, b_edge, edge_reads),
                               ("hub isp1:edge", hub_avg, b_hub, hub_reads)):
        assert lo - b - emu <= avg <= hi + b + emu, (
            f"{who}: jitter_ms averaged {avg:.3f} ms over {READS} readings, expected E|D| = 2 x {JITTER_MS:g} / 3 = "
            f"{expected:.3f} ms within {lo - b - emu:.2f} .. {hi + b + emu:.2f} (Monte Carlo {lo:.2f} .. {hi:.2f}, "
            f"no-impairment jitter {b:.3f}, emulator {emu:.2f}); readings {reads}")
    # The RTT moved by the delay; U's mean is 0 and its 95th percentile +0.9 x jitter.
    rtt = statistics.fmean(rtt_reads) - base["rtt_ms"]
    assert abs(rtt - JITTER_DELAY_MS) <= RTT_TOL_MS, f"rtt_ms rose by {rtt:.2f} ms, expected {JITTER_DELAY_MS:g} +- 3"
    p95 = last["rtt_p95_ms"] - base["rtt_ms"]
    assert abs(p95 - (JITTER_DELAY_MS + 0.9 * JITTER_MS)) <= RTT_TOL_MS, (
        f"rtt_p95_ms rose by {p95:.2f} ms, expected {JITTER_DELAY_MS + 0.9 * JITTER_MS:g} +- 3")


# --- 5. irtt as a reference -------------------------------------------------------------------

def run_irtt(lab: MeasureLab, irtt: str, out: Path, seconds: float, interval_ms: int = 20) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", lab.ns("lan-a"), irtt, "client", "-Q", "-i", f"{interval_ms}ms",
                             "-d", f"{seconds:g}s", "--wait=200ms", "-o", str(out), f"{HOST_B}:{IRTT_PORT}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True, text=True)


def irtt_stats(proc: subprocess.Popen, out: Path, timeout: float) -> dict:
    try:
        text, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AssertionError("irtt client did not finish") from None
    assert proc.returncode == 0 and out.exists(), f"irtt client -> {proc.returncode}: {text}"
    s = json.loads(out.read_text())["stats"]
    ms = lambda d: {k: v / 1e6 for k, v in d.items() if k in ("min", "mean", "median", "max")}  # noqa: E731
    return {"sent": s["packets_sent"], "received": s["packets_received"], "rtt": ms(s["rtt"]),
            "ipdv": ms(s["ipdv_round_trip"])}


@retry_if_lab_imprecise
def test_irtt_through_the_overlay_agrees_with_the_path(lab, tmp_path):
    irtt = require("irtt")
    lo, hi = path_jitter_band(JITTER_MS)
    irtt_s, interval_ms = 10.0, 20
    rng = random.Random(7)
    n_irtt = int(irtt_s * 1000 / interval_ms)
    diffs = []
    for _ in range(2000):
        diffs.append(rfc3550_reading_avg(rng, JITTER_MS, round(WARMUP_S / INTERVAL_S), READS,
                                         round(READ_EVERY_S / INTERVAL_S)) - mean_abs_ipdv(rng, JITTER_MS, n_irtt))
    dlo, dhi = quantiles(diffs)
    server = lab.popen("lan-b", irtt, "server", "-b", f"{HOST_B}:{IRTT_PORT}", out=tmp_path / "irtt-server.log")
    proc = None
    try:
        wait_until(lambda: "ListenerStart" in (tmp_path / "irtt-server.log").read_text(), 10, "irtt server to listen")
        # Only isp1 can carry the data: the others are blacked out and down.
        for isp in ("isp2", "isp3"):
            lab.impair(isp, "blackout")
        wait_until(lambda: {p for p, v in lab.paths().items() if v["state"] == "up"} == {"isp1:hub"}, 5,
                   "isp2 and isp3 down")
        tx0 = {n: p["tx_pkts"] for n, p in lab.paths().items()}

        # No impairment: what the LAN hops and hosts add to the path's RTT.
        b_path = baseline_jitter(lab, "isp1:hub", seconds=1.0)
        base = irtt_stats(run_irtt(lab, irtt, tmp_path / "base.json", 4, interval_ms), tmp_path / "base.json", 30)
        p = lab.paths()["isp1:hub"]
        overhead = base["rtt"]["median"] - p["rtt_p50_ms"]
        b_irtt = base["ipdv"]["mean"]

        lab.impair("isp1", "dir=up", f"delay={JITTER_DELAY_MS:g}ms", f"jitter={JITTER_MS:g}ms")
        time.sleep(WARMUP_S)
        proc = run_irtt(lab, irtt, tmp_path / "run.json", irtt_s, interval_ms)
        reads = []
        for _ in range(READS):
            t = time.monotonic()
            reads.append(lab.paths()["isp1:hub"])
            time.sleep(max(0.0, READ_EVERY_S - (time.monotonic() - t)))
        run = irtt_stats(proc, tmp_path / "run.json", irtt_s + 30)
        end = lab.paths()
        lab.check_emulator_precise("isp1")
    finally:
        for p_ in (proc, server):
            if p_ is not None and p_.poll() is None:
                try:
                    os.killpg(p_.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p_.wait(timeout=10)
    path_rtt = statistics.fmean(r["rtt_ms"] for r in reads)
    path_jit = statistics.fmean(r["jitter_ms"] for r in reads)
    emu = 2 * EMU_P99_MS
    print(f"\n[irtt] no impairment: irtt median {base['rtt']['median']:.3f} ms, path p50 {p['rtt_p50_ms']:.3f} ms "
          f"(overlay + hosts add {overhead:.3f} ms), irtt ipdv {b_irtt:.3f}, path jitter {b_path:.3f}; "
          f"impaired: irtt mean {run['rtt']['mean']:.3f} median {run['rtt']['median']:.3f} ipdv "
          f"{run['ipdv']['mean']:.3f} ({run['received']}/{run['sent']}); path rtt avg {path_rtt:.3f} p50 "
          f"{end['isp1:hub']['rtt_p50_ms']:.3f} jitter avg {path_jit:.3f}; diff band {dlo:.2f} .. {dhi:.2f}")
    sent = base["sent"] + run["sent"]
    assert end["isp1:hub"]["tx_pkts"] - tx0["isp1:hub"] >= sent, f"irtt's packets did not all take isp1: {end}"
    assert all(end[n]["tx_pkts"] == tx0[n] for n in ("isp2:hub", "isp3:hub")), f"data left on a down path: {end}"
    assert run["received"] >= 0.99 * run["sent"], f"irtt lost packets: {run}"
    assert abs(overhead) < 1.0, (
        f"irtt's median RTT {base['rtt']['median']:.3f} ms vs the path's p50 {p['rtt_p50_ms']:.3f} ms: the LAN side "
        f"adds {overhead:.3f} ms, expected a fraction of a millisecond")
    assert abs(run["rtt"]["mean"] - path_rtt) <= RTT_TOL_MS, (
        f"irtt mean RTT {run['rtt']['mean']:.3f} ms vs the path's rtt_ms {path_rtt:.3f} ms (averaged)")
    assert abs(run["rtt"]["median"] - end["isp1:hub"]["rtt_p50_ms"]) <= RTT_TOL_MS, (
        f"irtt median RTT {run['rtt']['median']:.3f} ms vs the path's rtt_p50_ms {end['isp1:hub']['rtt_p50_ms']:.3f}")
    d = path_jit - run["ipdv"]["mean"]
    assert dlo - b_path - b_irtt - emu <= d <= dhi + b_path + b_irtt + emu, (
        f"the path's jitter_ms {path_jit:.3f} (averaged) vs irtt's IPDV mean {run['ipdv']['mean']:.3f}: differ by "
        f"{d:.3f} ms, expected {dlo:.2f} .. {dhi:.2f} (Monte Carlo) widened by the no-impairment jitter of each "
        f"({b_path:.3f}, {b_irtt:.3f}) and the emulator ({emu:.2f})")
    expected = 2 * JITTER_MS / 3
    assert lo - b_path - emu <= path_jit <= hi + b_path + emu, (
        f"path jitter_ms {path_jit:.3f}, expected {expected:.3f} within {lo:.2f} .. {hi:.2f} +- noise")


def wait_until(pred, timeout: float, what: str, every: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


# --- 6. nothing in the clear ------------------------------------------------------------------

def read_pcap(path: Path) -> list[tuple[float, bytes]]:
    """(time, frame) of a classic pcap file (what tcpdump -w writes)."""
    data = path.read_bytes()
    magic = data[:4]
    endian = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">", b"\x4d\x3c\xb2\xa1": "<",
              b"\xa1\xb2\x3c\x4d": ">"}.get(magic)
    assert endian, f"{path.name}: not a pcap file (magic {magic.hex()})"
    frac = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    out, off = [], 24
    while off + 16 <= len(data):
        sec, sub, incl, _orig = struct.unpack(endian + "IIII", data[off:off + 16])
        out.append((sec + sub * frac, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    return out


def parse_keylog(text: str) -> dict[tuple[str, str, int], bytes]:
    """Wireshark esp_sa lines -> key || salt by (source, destination, SPI)."""
    sas = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        f = next(csv.reader([line]))
        sas[(f[1], f[2], int(f[3], 16))] = bytes.fromhex(f[5][2:])
    return sas


def has_clear_probe(frame: bytes) -> bool:
    return bool(CLEAR_TEST.search(frame) or CLEAR_REFLECTED.search(frame))


def check_frame(frame: bytes, sas: dict, esn: bool) -> tuple[str, str, bytes]:
    """(kind, why, plaintext): kind arp, esp or bad (why says what is wrong)."""
    if has_clear_probe(frame):
        return "bad", "a STAMP packet in the clear", b""
    etype = struct.unpack("!H", frame[12:14])[0]
    if etype == 0x0806:
        return "arp", "", b""
    if etype != 0x0800:
        return "bad", f"ethertype 0x{etype:04x}", b""
    ip = frame[14:]
    ihl, total, proto = (ip[0] & 15) * 4, struct.unpack("!H", ip[2:4])[0], ip[9]
    src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
    if proto != 17 or total > len(ip):
        return "bad", f"IPv4 {src} -> {dst} proto {proto}", b""
    udp = ip[ihl:total]
    sport, dport, ulen = struct.unpack("!HHH", udp[:6])
    if (sport, dport) != (ESP_PORT, ESP_PORT):
        return "bad", f"UDP {src}:{sport} -> {dst}:{dport}", b""
    esp = udp[8:]
    if ulen != len(udp):
        return "bad", f"UDP length {ulen} for {len(udp)} bytes", b""
    spi, seq = struct.unpack("!II", esp[:8]) if len(esp) >= 8 else (0, 0)
    if spi == 0 or len(esp) < 8 + 8 + 4 + 16 or (len(esp) - 16 - 16) % 4:
        return "bad", f"not ESP: SPI 0x{spi:08x}, {len(esp)} bytes", b""
    key = sas.get((src, dst, spi))
    if key is None:
        return "bad", f"SPI 0x{spi:08x} {src} -> {dst} is in no key log line", b""
    aad = struct.pack("!III", spi, 0, seq) if esn else esp[:8]
    try:
        plain = AESGCM(key[:32]).decrypt(key[32:] + esp[8:16], esp[16:], aad)
    except InvalidTag:
        return "bad", f"SPI 0x{spi:08x} seq {seq}: the ICV does not verify", b""
    if plain[-1] != NH_OVERLAY:
        return "bad", f"next header {plain[-1]}", b""
    return "esp", "", plain[:len(plain) - 2 - plain[-2]]


def test_no_probe_crosses_an_isp_in_the_clear(lab, tmp_path):
    require("tcpdump")
    seconds = 3.0
    caps = []
    try:
        for isp in ISPS:
            for iface in (f"{isp}-e", f"{isp}-h"):
                caps.append(Tcpdump(lab.ns(isp), iface, tmp_path / f"{iface}.pcap"))
        time.sleep(seconds)
        for c in caps:
            c.stop()
    finally:
        for c in caps:
            c.kill()
    sas = parse_keylog(Path(lab.status["keylog"]).read_text())
    esn = lab.status["esn"] is not False
    report = []
    for c in caps:
        frames = read_pcap(c.out)
        bad, probes, plains = [], {"test": 0, "reflected": 0}, {}
        for n, (_, f) in enumerate(frames, start=1):
            kind, why, plain = check_frame(f, sas, esn)
            if kind == "bad":
                bad.append(f"#{n}: {why}")
            elif kind == "esp" and plain[0] == 0x11:
                stamp = plain[16:]
                assert struct.unpack("!H", stamp[12:14])[0] == STAMP_ERR_EST, (
                    f"{c.out.name} #{n}: a decrypted probe without STAMP's error estimate: {plain.hex()}")
                kind = "reflected" if plain[3] & 1 else "test"
                probes[kind] += 1
                plains.setdefault(kind, plain)
        assert not bad, f"{c.out.name}: frames that are not ESP between the appliances:\n" + "\n".join(bad[:20])
        # Each direction carries one appliance's test packets and its reflections of the other's.
        expect = 2 * 2 * seconds / INTERVAL_S
        assert sum(probes.values()) >= 0.75 * expect and min(probes.values()) > 0, (
            f"{c.out.name}: {probes} probes in {seconds:g} s, expected about {expect:.0f}")
        # The detector catches these very probes once their plaintext is in the clear.
        for kind, plain in plains.items():
            assert has_clear_probe(bytes(42) + plain), f"the clear-probe detector misses a real {kind} probe"
        report.append(f"{c.out.name}: {len(frames)} frames, probes {probes}")
    print("\n[capture] " + "; ".join(report))


# --- 4. blackout, recovery, damping (last: it leaves isp1 with a flap history) ----------------

PATH_EVENTS = ("path_up", "path_down", "path_damped")  # docs/events.md: the path's state changes


def is_path_change(e: dict, path: str) -> bool:
    return e.get("type") in PATH_EVENTS and e.get("path") == path


def wait_event(lab: MeasureLab, path: str, after: int, timeout: float) -> tuple[int, dict]:
    """The first state change of `path` at index >= after in `show events` (polled every 10 ms)."""
    deadline = time.monotonic() + timeout
    while True:
        evs = lab.events()
        assert len(evs) < 1000, "the event ring is full: indexes no longer mean anything"
        for i in range(after, len(evs)):
            if is_path_change(evs[i], path):
                return i, evs[i]
        if time.monotonic() > deadline:
            raise AssertionError(f"no event for {path} within {timeout} s; last events: {evs[-5:]}")
        time.sleep(0.01)


def test_blackout_down_clear_up_and_damping_on_isp1(lab):
    path = "isp1:hub"
    detect_max = (MULTIPLIER + 1) * INTERVAL_S
    detect_min = (MULTIPLIER - 1) * INTERVAL_S
    # The first probe after the clear leaves within I, its reply and the next H - 1 make the path
    # up; the H-th may be late by up to the slack cap and still count as good (path_state.hpp).
    up_min, up_max = (HOLD_UP - 1) * INTERVAL_S, HOLD_UP * INTERVAL_S + SLACK_CAP_S
    # The hold ends at the first timer tick after it, plus the scheduling margin the detection
    # bound allows beyond its own slack cap ((M + 1) x I - (M x I + I/2) = I/2).
    held_max = DAMP_HOLD_S + TIMER_TICK_S + INTERVAL_S / 2
    evs = lab.events()
    now = time.time()
    flaps_before = sum(1 for e in evs if is_path_change(e, path) and e["from"] == "up" and e["to"] == "down"
                       and now - wall(e["time"]) < DAMP_WINDOW_S)
    damp_at = DAMP_FLAPS - flaps_before
    assert damp_at >= 1, f"{path} flapped {flaps_before} times in the last minute before this test: {evs}"
    detections, recoveries = [], []
    idx = len(evs)
    for k in range(1, damp_at + 1):
        _, t_black, t_black_ok = lab.wanem("isp1", "blackout")
        idx, down = wait_event(lab, path, idx, 2 * detect_max + 1)
        # The emulator blacked out between sending the command and its reply: the earliest
        # possible moment for the lower bound, the latest for the upper.
        detect, detect_late = wall(down["time"]) - t_black, wall(down["time"]) - t_black_ok
        detections.append(detect)
        assert (down["from"], down["to"]) == ("up", "down") and down["reason"] == f"missed {MULTIPLIER} probes", (
            f"blackout {k}: {down}")
        assert detect_min - 0.002 <= detect and detect_late <= detect_max, (
            f"blackout {k}: {path} down {detect * 1000:.0f} ms after the blackout command was sent "
            f"({detect_late * 1000:.0f} ms after the emulator confirmed it), expected "
            f"{detect_min * 1000:.0f} .. {detect_max * 1000:.0f} ms (interval x multiplier + one interval)")
        state = lab.paths()[path]
        assert state["state"] in ("down", "damped"), f"show paths after the down event: {state}"
        if k < damp_at:
            _, t_clear, t_clear_ok = lab.wanem("isp1", "clear")
            idx, up = wait_event(lab, path, idx + 1, up_max + 2)
            rec, rec_late = wall(up["time"]) - t_clear, wall(up["time"]) - t_clear_ok
            recoveries.append(rec)
            assert (up["from"], up["to"], up["reason"]) == ("down", "up", f"{HOLD_UP} good probes"), (
                f"clear {k}: {up} (flap {flaps_before + k} of {DAMP_FLAPS} must not damp)")
            assert up_min - 0.002 <= rec and rec_late <= up_max, (
                f"clear {k}: up {rec * 1000:.0f} ms after the clear was sent ({rec_late * 1000:.0f} ms after the "
                f"emulator confirmed it), expected {up_min * 1000:.0f} .. {up_max * 1000:.0f} ms ({HOLD_UP} good "
                f"probes, the last up to the slack cap late)")
            idx += 1
            continue
        # The DAMP_FLAPS-th flap: damped at once, held although the probes come back.
        idx, damped = wait_event(lab, path, idx + 1, 1)
        assert (damped["from"], damped["to"]) == ("down", "damped"), f"flap {DAMP_FLAPS}: {damped}"
        assert wall(damped["time"]) - wall(down["time"]) <= 0.002, f"damped late: {down} then {damped}"
        assert re.search(rf"damped for 1 s \({DAMP_FLAPS} flaps in 60 s\)", damped["reason"]), damped
        _, t_clear, _ = lab.wanem("isp1", "clear")
        rx0 = lab.paths()[path]["probes_received"]
        time.sleep(max(0.0, wall(damped["time"]) + DAMP_HOLD_S / 2 - time.time()))
        mid = lab.paths()[path]
        assert mid["state"] == "damped" and mid["probes_received"] >= rx0 + 2, (
            f"half-way through the hold: {mid} (probes received before {rx0})")
        idx, release = wait_event(lab, path, idx + 1, DAMP_HOLD_S + 2)
        held = wall(release["time"]) - wall(damped["time"])
        assert (release["from"], release["to"], release["reason"]) == ("damped", "up", f"{HOLD_UP} good probes"), (
            f"end of the hold: {release}")
        assert DAMP_HOLD_S - 0.002 <= held <= held_max, (
            f"damped for {held:.3f} s, expected the {DAMP_HOLD_S:g} s hold (at most {held_max:.3f} s: the next "
            f"timer tick and scheduling)")
    print(f"\n[blackout] detection ms {[round(d * 1000) for d in detections]}, recovery ms "
          f"{[round(r * 1000) for r in recoveries]}, damped at blackout {damp_at} "
          f"(flaps before {flaps_before}), held {held:.3f} s")
