"""Live reload in the lab (issue 7): the edge's config file changed under traffic, applied with
`sdwanctl reload` or SIGHUP, without restarting the dataplane.

A sequence-numbered UDP stream (1,000 packets/s on voice's port 5004) runs from lan-a to lan-b
across each reload; the receiver counts what arrived. An unchanged flow must lose nothing, and a
refused reload (broken file, or a change that needs a restart) must leave the running config
and the traffic as they were.
"""

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from labkit import TAG, EdgeLab, edge_lab, sweep_dead_labs as _sweep, udp_stream

HOST_B = "192.168.20.2"
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
    tx0 = {p["name"]: p["probes_sent"] for p in paths}
    time.sleep(2)
    tx1 = {p["name"]: p["probes_sent"] for p in lab.ctl_json("show", "paths")}
    for name in tx0:
        rate = (tx1[name] - tx0[name]) / 2
        assert 15 <= rate <= 25, f"{name}: {rate} probes/s after the reload to 50 ms"

