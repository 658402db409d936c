"""Live reload in the lab (issue 7): the edge's config file changed under traffic, applied with
`sdwanctl reload` or SIGHUP, without restarting the dataplane.

A sequence-numbered UDP stream (1,000 packets/s on voice's port 5004) runs from lan-a to lan-b
across each reload; the receiver counts what arrived. An unchanged flow must lose nothing, and a
refused reload (broken file, or a change that needs a restart) must leave the running config
and the traffic as they were.
"""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from labkit import BUILD, TAG, EdgeLab, edge_lab, sweep_dead_labs as _sweep, udp_stream

HOST_B = "192.168.20.2"
SDWANCTL = Path(os.environ.get("SDWANCTL", Path(BUILD) / "control" / "cli" / "sdwanctl"))
_counter = iter(range(400, 500))


@pytest.fixture(scope="session", autouse=True)
def sweep_dead_labs():
    _sweep()
    yield


class Lab(EdgeLab):
    def __init__(self, prefix):
        super().__init__(prefix)
        self.config = Path(self.status["appliances"]["edge"]["config"])
        self.original = self.config.read_text()

    def edit(self, change):
        cfg = yaml.safe_load(self.config.read_text())
        change(cfg)
        self.config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    def classes(self):
        return {r["class"]: r for r in self.ctl_json("show", "classes")}

    def probes_sent(self) -> tuple[dict[str, int], float, float]:
        """Every path's probes_sent, read with sdwanctl itself (no scripts/lab start-up), and the
        monotonic times just before and just after: the daemon took its figures in between."""
        t0 = time.monotonic()
        p = subprocess.run([str(SDWANCTL), "--socket", self.status["appliances"]["edge"]["socket"],
                            "show", "paths", "--json"], capture_output=True, text=True, timeout=10)
        t1 = time.monotonic()
        assert p.returncode == 0, f"sdwanctl show paths: {p.stdout}{p.stderr}"
        return {x["name"]: x["probes_sent"] for x in json.loads(p.stdout)}, t0, t1


@pytest.fixture(scope="module")
def lab():
    yield from edge_lab(f"L{TAG}x{next(_counter)}-", Lab)


@pytest.fixture
def restore(lab):
    yield
    lab.config.write_text(lab.original)
    lab.ctl("reload", check=False)


def stream(lab, port=5004, secs=5):
    return udp_stream(lab.ns("lan-a"), lab.ns("lan-b"), HOST_B, port, secs)


def add_gaming(cfg):
    gaming = {"name": "gaming", "match": [{"proto": "udp", "dport": 7777}], "mode": "best",
              "sla": {"latency_ms": 100}}
    cfg["classes"].insert(len(cfg["classes"]) - 1, gaming)  # before the default
    voice = next(c for c in cfg["classes"] if c["name"] == "voice")
    voice["sla"]["latency_ms"] = 140
    cfg["policy"]["switch_margin_pct"] = 15


def test_reload_under_traffic_applies_classes_and_loses_nothing(lab, restore):
    # A flow of the default class on port 7777 before the reload...
    done_bulk = stream(lab, port=7777, secs=6)
    done = stream(lab, secs=6)
    time.sleep(1.5)
    flows = lab.ctl_json("show", "flows")
    assert any(f.get("dport") == 7777 and f.get("class") == "bulk" for f in flows), flows
    lab.edit(add_gaming)
    rep = lab.ctl_json("reload")
    sent, received = done()
    sent7, received7 = done_bulk()
    print(f"reload: {rep['changes']}; voice stream {received} of {sent}, port 7777 {received7} of {sent7}")
    assert rep["applied"] is True
    assert "class gaming: added" in rep["changes"] and "class voice: changed" in rep["changes"], rep
    assert any(c.startswith("policy: margin 10 -> 15") for c in rep["changes"]), rep
    assert sent == received, f"the unchanged voice flow lost {sent - received} of {sent} packets across the reload"
    assert sent7 == received7, f"the re-classified flow lost {sent7 - received7} of {sent7}"
    classes = lab.classes()
    assert "gaming" in classes and classes["gaming"]["mode"] == "best", classes
    # ... is classified again: it is gaming now.
    flows = lab.ctl_json("show", "flows")
    assert any(f.get("dport") == 7777 and f.get("class") == "gaming" for f in flows), flows
    assert "140" in " ".join(lab.ctl("explain", "voice").stdout.split()), "voice's new SLA"
    ev = [e for e in lab.ctl_json("show", "events") if e.get("type") == "reload"]
    assert ev and "class gaming: added" in ev[-1]["changes"], ev


def test_broken_config_is_refused_and_traffic_continues(lab, restore):
    before = lab.classes()
    done = stream(lab, secs=4)
    time.sleep(1)
    lab.edit(lambda cfg: cfg["classes"][0].update(mode="fastest"))
    p = lab.ctl("reload", check=False)
    sent, received = done()
    assert p.returncode == 1
    assert "reload refused, the running config stays" in p.stderr and "mode" in p.stderr, p.stderr
    assert str(lab.config) in p.stderr, f"the error names the file: {p.stderr}"
    assert sent == received, f"lost {sent - received} of {sent} around a refused reload"
    assert set(lab.classes()) == set(before)
    failed = [e for e in lab.ctl_json("show", "events") if e.get("type") == "reload_failed"]
    assert failed and "mode" in failed[-1]["error"] and failed[-1]["via"] == "sdwanctl reload", failed


def test_a_change_that_needs_a_restart_is_refused(lab, restore):
    lab.edit(lambda cfg: cfg["lan"].update(address="192.168.11.1/24"))
    p = lab.ctl("reload", check=False)
    assert p.returncode == 1
    assert "lan: needs a restart" in p.stderr, p.stderr
    assert lab.ctl_json("show", "version")["name"] == "edge"


def test_sighup_reloads_and_no_change_is_reported(lab, restore):
    p = lab.ctl("reload")
    assert "no change" in p.stdout, p.stdout
    log = Path(lab.status["appliances"]["edge"]["log"])
    lab.edit(lambda cfg: cfg["paths"].update(probe_interval=50) if "paths" in cfg else cfg.update(paths={"probe_interval": 50}))
    mark = log.stat().st_size
    os.kill(lab.status["appliances"]["edge"]["pid"], signal.SIGHUP)
    deadline = time.monotonic() + 5
    text = ""
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace")[mark:]
        if "reload (SIGHUP) applied" in text:
            break
        time.sleep(0.1)
    assert "reload (SIGHUP) applied" in text and "probe interval 100 -> 50 ms" in text, text
    # The paths stay up with the new timer, and their probes now go every 50 ms.
    time.sleep(1)
    paths = lab.ctl_json("show", "paths")
    assert all(p["state"] == "up" for p in paths), paths
    # 20 probes/s, give or take a quarter (the old 100 ms would be 10/s). The daemon read each
    # snapshot somewhere inside its sdwanctl call, so the counted window is at least from the end
    # of the first call to the start of the second (inner) and at most from the start of the
    # first to the end of the second (outer): the low bound holds over the inner window, the
    # high one over the outer, however long a loaded machine takes to run sdwanctl.
    tx0, a0, a1 = lab.probes_sent()
    time.sleep(2)
    tx1, b0, b1 = lab.probes_sent()
    inner, outer = b0 - a1, b1 - a0
    for name in tx0:
        n = tx1[name] - tx0[name]
        assert 15 * inner <= n <= 25 * outer, \
            f"{name}: {n} probes in {inner:.3f}..{outer:.3f} s after the reload to 50 ms (15..25/s)"



def add_hub2(cfg):
    hub = next(p for p in cfg["peers"] if p["name"] == "hub")
    # Nobody answers at 10.1.1.9: hub2's one path is probed and stays down.
    cfg["peers"].append({"name": "hub2", "key_file": hub["key_file"],
                         "endpoints": [{"address": "10.1.1.9", "uplinks": ["isp1"]}],
                         "prefixes": ["192.168.30.0/24"]})


def wait_hub_paths_up(lab, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        paths = [p for p in lab.ctl_json("show", "paths") if p["peer"] == "hub"]
        if paths and all(p["state"] == "up" for p in paths):
            return paths
        time.sleep(0.2)
    raise AssertionError(f"the hub's paths did not come up: {lab.ctl_json('show', 'paths')}")


def host_routes(lab) -> set[str]:
    """The edge host stack's routes through its host port (docs/host.md)."""
    out = subprocess.run(["ip", "netns", "exec", lab.ns("edge"), "ip", "-4", "route", "show", "dev", "sdwan0"],
                         capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_peers_added_and_removed_live_without_touching_the_other_peers_flows(lab, restore):
    wait_hub_paths_up(lab)
    # 1. A peer added under traffic: the hub's voice flow loses nothing and keeps its path.
    done = stream(lab, secs=6)
    time.sleep(1.5)
    before = [f for f in lab.ctl_json("show", "flows") if f.get("dport") == 5004]
    assert before and before[0].get("path"), before
    lab.edit(add_hub2)
    rep = lab.ctl_json("reload")
    assert rep["applied"] and "peer hub2: added" in rep["changes"], rep
    time.sleep(0.5)
    after = [f for f in lab.ctl_json("show", "flows") if f.get("dport") == 5004]
    sent, received = done()
    assert sent == received, f"adding a peer cost the hub's voice flow {sent - received} of {sent} packets"
    assert after and after[0]["path"] == before[0]["path"], (before, after)
    peers = {p["name"]: p for p in lab.ctl_json("show", "peers")}
    assert set(peers) == {"hub", "hub2"}, peers
    assert peers["hub2"]["paths_total"] == 1 and peers["hub2"]["prefixes"] == ["192.168.30.0/24"], peers
    names = [p["name"] for p in lab.ctl_json("show", "paths")]
    assert "isp1:hub2" in names and sum(n.endswith(":hub") for n in names) == 3, names
    assert any(r["path"] == "isp1:hub2" for r in lab.ctl_json("show", "sas")), "hub2's path got its SAs"
    epochs = {r["path"]: r["epoch"] for r in lab.ctl_json("show", "sas") if r["direction"] == "out"}
    assert {"192.168.20.0/24", "192.168.30.0/24"} <= host_routes(lab), host_routes(lab)

    # 2. The hub removed: its paths, SAs and route go; traffic to lan-b has no route now.
    def drop_hub(cfg):
        cfg["peers"] = [p for p in cfg["peers"] if p["name"] != "hub"]
        cfg.pop("apps", None)  # its check of a service behind the hub goes with it (config.md: apps)
    lab.edit(drop_hub)
    rep = lab.ctl_json("reload")
    assert "peer hub: removed" in rep["changes"], rep
    assert [p["name"] for p in lab.ctl_json("show", "peers")] == ["hub2"]
    assert [p["name"] for p in lab.ctl_json("show", "paths")] == ["isp1:hub2"]
    assert all(r["path"] == "isp1:hub2" for r in lab.ctl_json("show", "sas"))
    assert "192.168.20.0/24" not in host_routes(lab) and "192.168.30.0/24" in host_routes(lab), host_routes(lab)
    no_route0 = lab.ctl_json("show", "stats")["drops"]["no_route"]
    sent, received = stream(lab, secs=1)()
    assert received == 0, f"{received} of {sent} packets reached lan-b through a removed peer"
    assert lab.ctl_json("show", "stats")["drops"]["no_route"] >= no_route0 + sent // 2

    # 3. Back as in the lab's file (hub again, hub2 gone): the hub's paths start again at newer
    # epochs, come up, and carry the stream.
    lab.config.write_text(lab.original)
    rep = lab.ctl_json("reload")
    assert "peer hub: added" in rep["changes"] and "peer hub2: removed" in rep["changes"], rep
    assert [p["name"] for p in lab.ctl_json("show", "peers")] == ["hub"]
    assert "192.168.20.0/24" in host_routes(lab) and "192.168.30.0/24" not in host_routes(lab), host_routes(lab)
    wait_hub_paths_up(lab)
    again = {r["path"]: r["epoch"] for r in lab.ctl_json("show", "sas") if r["direction"] == "out"}
    for path, epoch in epochs.items():
        if path.endswith(":hub"):
            assert again[path] > epoch, f"{path} restarted at epoch {again[path]}, not above {epoch}"
    time.sleep(1)
    sent, received = stream(lab, secs=2)()
    assert received >= sent * 0.99, f"after the hub came back, {received} of {sent} arrived"
