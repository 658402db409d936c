"""Network namespaces, veth pairs, kernel hosts and sdwand processes for the lab tests.

Everything a Lab makes is named after the pytest process that made it, so two test runs on
one host (two engineers, or scripts/test beside a hand-run pytest) never touch each other's
namespaces, and a later run can recognise and remove what a killed run left behind:

    namespace      t-<role>-<tag>          e.g. t-edge-2hsm8
    veth (default) t<tag><n><a|b>          e.g. t2hsm83a  (<= 15 characters)
    DPDK prefix    t-<name>-<tag>          hugepage files and /var/run/dpdk/<prefix>

where <tag> is the pytest process id in base 36. Lab.close() kills every process started in
its namespaces, deletes the namespaces (which deletes their veths) and removes the DPDK
runtime files of its daemons; it is safe to call more than once and after a failure.
sweep() removes the leftovers of lab runs whose process is gone.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

NS_PREFIX = "t-"
HUGEPAGE_DIR = "/dev/hugepages"
DPDK_RUN_DIR = "/var/run/dpdk"
IFNAMSIZ = 15


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


TAG = _base36(os.getpid())
_TAG_RE = re.compile(r"^t-[a-z0-9_.-]+-([0-9a-z]+)$")


def run(cmd: list[str], check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
    """Runs cmd, capturing text output; a failure raises with the command and its stderr."""
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} -> exit {p.returncode}\n{p.stdout}{p.stderr}")
    return p


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ns_pids(ns: str) -> list[int]:
    p = run(["ip", "netns", "pids", ns], check=False)
    return [int(x) for x in p.stdout.split() if x.isdigit()]


def _kill_ns_processes(ns: str) -> None:
    """SIGTERM, then SIGKILL, whatever still runs in namespace ns."""
    for sig, grace in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        pids = _ns_pids(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and _ns_pids(ns):
            time.sleep(0.05)


def remove_dpdk_files(prefix: str) -> None:
    """Hugepage files and the runtime dir a DPDK process with --file-prefix prefix left."""
    for f in glob.glob(os.path.join(HUGEPAGE_DIR, glob.escape(prefix) + "map_*")):
        try:
            os.unlink(f)
        except FileNotFoundError:
            pass
    shutil.rmtree(os.path.join(DPDK_RUN_DIR, prefix), ignore_errors=True)


def _delete_ns(ns: str) -> None:
    _kill_ns_processes(ns)
    run(["ip", "netns", "del", ns], check=False)


def sweep() -> list[str]:
    """Removes namespaces and DPDK files of lab runs whose pytest process is gone.
    Returns what it removed."""
    removed = []
    listing = run(["ip", "-j", "netns", "list"], check=False).stdout.strip()
    names = [n["name"] for n in json.loads(listing)] if listing else []
    for ns in names:
        m = _TAG_RE.match(ns)
        if m and m.group(1) != TAG and not _pid_alive(int(m.group(1), 36)):
            _delete_ns(ns)
            removed.append(ns)
    candidates = set()
    for f in glob.glob(os.path.join(HUGEPAGE_DIR, NS_PREFIX + "*map_*")):
        candidates.add(os.path.basename(f).rsplit("map_", 1)[0])
    for d in glob.glob(os.path.join(DPDK_RUN_DIR, NS_PREFIX + "*")):
        candidates.add(os.path.basename(d))
    for prefix in sorted(candidates):
        m = _TAG_RE.match(prefix)
        if m and m.group(1) != TAG and not _pid_alive(int(m.group(1), 36)):
            remove_dpdk_files(prefix)
            removed.append(prefix)
    return removed


class Netns:
    """One network namespace of a Lab."""

    def __init__(self, lab: "Lab", role: str):
        self.lab = lab
        self.role = role
        self.name = f"{NS_PREFIX}{role}-{TAG}"

    def __repr__(self) -> str:
        return f"Netns({self.name})"

    def cmd(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(self, args: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Runs args inside the namespace and waits for it."""
        return run(self.cmd(args), check=check, timeout=timeout)

    def popen(self, args: list[str], **kw) -> subprocess.Popen:
        """Starts args inside the namespace in its own process group; Lab.close() ends it."""
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(self.cmd(args), start_new_session=True, **kw)
        self.lab.procs.append(p)
        return p

    def ip(self, *args: str) -> subprocess.CompletedProcess:
        return run(["ip", "-n", self.name, *args])

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def disable_ipv6(self) -> None:
        """Keeps router solicitations and MLD reports off links the appliance counts drops on."""
        self.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        self.sysctl("net.ipv6.conf.default.disable_ipv6", "1")


class Lab:
    """Namespaces, links and processes of one test (or module), removed by close()."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.namespaces: list[Netns] = []
        self.procs: list[subprocess.Popen] = []
        self.daemons: list["Daemon"] = []
        self._veths = 0
        self.closed = False

    def netns(self, role: str) -> Netns:
        """A new namespace t-<role>-<tag> with lo up and IPv6 off."""
        ns = Netns(self, role)
        if ns.name in {n.name for n in self.namespaces}:
            raise ValueError(f"namespace {ns.name} already made by this lab")
        run(["ip", "netns", "del", ns.name], check=False)  # our own pid: only a stale run of ours
        run(["ip", "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        ns.disable_ipv6()
        return ns

    def veth(self, a: Netns, b: Netns, name_a: str | None = None,
             name_b: str | None = None) -> tuple[str, str]:
        """A veth pair made directly inside a and b (never in the host's namespace), both ends
        up. Returns the two interface names."""
        self._veths += 1
        name_a = name_a or f"t{TAG}{self._veths}a"
        name_b = name_b or f"t{TAG}{self._veths}b"
        for n in (name_a, name_b):
            if len(n) > IFNAMSIZ:
                raise ValueError(f"interface name {n!r} is longer than {IFNAMSIZ} characters")
        run(["ip", "link", "add", "name", name_a, "netns", a.name, "type", "veth",
             "peer", "name", name_b, "netns", b.name])
        a.ip("link", "set", name_a, "up")
        b.ip("link", "set", name_b, "up")
        return name_a, name_b

    def host(self, ns: Netns, ifname: str, cidr: str, gateway: str | None = None,
             routes: list[str] = ()) -> None:
        """Makes ifname in ns an ordinary kernel host: address, routes via gateway (default
        route when routes is empty), and no TX checksum offload, because af_packet hands the
        appliance kernel-offloaded TCP/UDP with incomplete checksums otherwise."""
        ns.ip("addr", "add", cidr, "dev", ifname)
        ns.ip("link", "set", ifname, "up")
        ns.run(["ethtool", "-K", ifname, "tx", "off"])
        if gateway:
            for r in routes or ["default"]:
                ns.ip("route", "replace", r, "via", gateway, "dev", ifname)

    def close(self) -> None:
        """Stops daemons, kills every process of this lab, deletes its namespaces and DPDK
        files. Idempotent; never raises for something already gone."""
        if self.closed:
            return
        self.closed = True
        for d in self.daemons:
            d.kill()
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
        for ns in reversed(self.namespaces):
            _delete_ns(ns.name)
        for d in self.daemons:
            remove_dpdk_files(d.file_prefix)


# --- sdwand ------------------------------------------------------------------------------

def build_dir() -> Path:
    b = os.environ.get("SDWAN_BUILD")
    if b:
        return Path(b)
    return Path(__file__).resolve().parents[2] / "build"


def _binary(env: str, *candidates: str) -> Path:
    """$env (tests/lab/meson.build sets it to the target's real path), else the first of
    candidates (relative to the build dir) that exists, else the first candidate."""
    if os.environ.get(env):
        return Path(os.environ[env])
    paths = [build_dir() / c for c in candidates]
    return next((p for p in paths if p.exists()), paths[0])


def sdwand_path() -> Path:
    return _binary("SDWAND", "control/app/sdwand", "control/sdwand")


def sdwanctl_path() -> Path:
    return _binary("SDWANCTL", "control/cli/sdwanctl")


def sdwand_args(config_file: Path) -> list[str]:
    """How sdwand is told which config to run."""
    return ["--config", str(config_file)]


_PLAIN = re.compile(r"^[A-Za-z0-9_./-]+$")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _YAML_WORDS and not re.match(r"^[-+.0-9]", s):
        return s
    if _PLAIN.match(s) and re.match(r"^\d+\.\d+\.\d+\.\d+(/\d+)?$", s):
        return s  # an IPv4 address or prefix is not a number to YAML
    return json.dumps(s)


def to_yaml(value, indent: int = 0) -> str:
    """A small YAML writer for config dicts (block style, flow lists of scalars), so the
    tests need nothing beyond Debian's python3."""
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for k, v in value.items():
            if isinstance(v, dict) and v:
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            elif isinstance(v, list) and v and any(isinstance(x, (dict, list)) for x in v):
                lines.append(f"{pad}{k}:\n{to_yaml(v, indent + 2)}")
            else:
                lines.append(f"{pad}{k}: {_inline(v)}")
        return "\n".join(lines)
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, dict):
                body = to_yaml(item, indent + 2)
                lines.append(f"{pad}- {body[indent + 2:]}")
            else:
                lines.append(f"{pad}- {_inline(item)}")
        return "\n".join(lines)
    return pad + _scalar(value)


def _inline(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_inline(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_inline(x)}" for k, x in v.items()) + "}"
    return _scalar(v)


class DaemonError(AssertionError):
    pass


class Daemon:
    """One sdwand process in a namespace, with its config, socket and log in the lab's
    workdir. start() waits until the management socket answers; stop() checks a clean exit."""

    def __init__(self, lab: Lab, ns: Netns, name: str, config: dict):
        self.lab = lab
        self.ns = ns
        self.name = name
        self.dir = lab.workdir / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.socket = self.dir / "sdwand.sock"
        self.file_prefix = f"{NS_PREFIX}{name}-{TAG}"
        self.config = dict(config)
        self.config.setdefault("dpdk", {}).setdefault("file_prefix", self.file_prefix)
        self.config.setdefault("mgmt", {}).setdefault("socket", str(self.socket))
        self.socket = Path(self.config["mgmt"]["socket"])
        self.file_prefix = self.config["dpdk"]["file_prefix"]
        self.config_file = self.dir / f"{name}.yaml"
        self.config_file.write_text(to_yaml(self.config) + "\n")
        self.log_file = self.dir / "sdwand.log"
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        lab.daemons.append(self)

    def log(self, tail: int = 60) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no output)"
        return "\n".join(lines[-tail:])

    def start(self, timeout: float = 30) -> "Daemon":
        exe = sdwand_path()
        if not os.access(exe, os.X_OK):
            raise DaemonError(f"{exe} is not built (SDWAN_BUILD={build_dir()})")
        with open(self.log_file, "wb") as log:
            self.proc = self.ns.popen([str(exe), *sdwand_args(self.config_file)],
                                      stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.returncode = self.proc.returncode
                raise DaemonError(f"sdwand {self.name} exited with status {self.returncode} "
                                  f"while starting; its output:\n{self.log()}\n"
                                  f"config {self.config_file}:\n{self.config_file.read_text()}")
            if self.socket.exists():
                p = self.ctl("show", "version", "--json", check=False, timeout=5)
                if p.returncode == 0:
                    return self
                last = (p.stdout + p.stderr).strip()
            time.sleep(0.2)
        raise DaemonError(f"sdwand {self.name}: `sdwanctl show version --json` did not answer "
                          f"within {timeout:.0f} s (last: {last or 'no socket'}); its output:\n"
                          f"{self.log()}")

    def ctl(self, *args: str, check: bool = True, timeout: float = 10) -> subprocess.CompletedProcess:
        """sdwanctl --socket <ours> ARGS, from the host's namespace (a path socket needs none)."""
        cmd = [str(sdwanctl_path()), "--socket", str(self.socket), *args]
        p = run(cmd, check=False, timeout=timeout)
        if check and p.returncode != 0:
            raise DaemonError(f"{' '.join(cmd)} -> exit {p.returncode}: {p.stdout}{p.stderr}\n"
                              f"sdwand {self.name} output:\n{self.log()}")
        return p

    def ctl_json(self, *args: str):
        """sdwanctl ... --json, parsed."""
        p = self.ctl(*args, "--json")
        try:
            return json.loads(p.stdout)
        except json.JSONDecodeError as e:
            raise DaemonError(f"sdwanctl {' '.join(args)} --json printed no JSON ({e}): "
                              f"{p.stdout!r}") from None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM; asserts exit status 0 within timeout and that the socket file is gone."""
        assert self.proc is not None, f"sdwand {self.name} was never started"
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # ip netns exec execs sdwand: same pid
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise DaemonError(f"sdwand {self.name} did not exit within {timeout:.0f} s of "
                                  f"SIGTERM; its output:\n{self.log()}") from None
        self.returncode = self.proc.returncode
        if self.returncode != 0:
            raise DaemonError(f"sdwand {self.name} exited with status {self.returncode}; "
                              f"its output:\n{self.log()}")
        if self.socket.exists():
            raise DaemonError(f"sdwand {self.name} exited but left its socket {self.socket}")
        return self.returncode

    def kill(self) -> None:
        """Ends the process without checks (cleanup after a failure)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass


def wait_for(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Polls predicate() until it returns a truthy value, which it returns; raises after
    timeout with the last value seen."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what}: not true within {timeout} s (last: {last!r})")
        time.sleep(interval)


def ping(ns: Netns, dst: str, count: int, interval: float = 0.2, wait: float = 1.0,
         src: str | None = None) -> tuple[int, int, str]:
    """Pings dst from ns; returns (sent, received, output)."""
    args = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", str(wait)]
    if src:
        args += ["-I", src]
    p = ns.run(args + [dst], check=False, timeout=count * interval + wait + 30)
    m = re.search(r"(\d+) packets transmitted, (\d+) received", p.stdout)
    if not m:
        return count, 0, p.stdout + p.stderr
    return int(m.group(1)), int(m.group(2)), p.stdout
