"""Failover drills in the lab (issue 7): `sdwanctl drill` injects the failure inside the edge's
dataplane, and what it reports is checked against what a receiver on lan-b counted.

A sequence-numbered UDP stream (1,000 packets/s, voice's port 5004, class voice: mode best)
runs from lan-a to lan-b across the drill; the receiver counts the distinct sequence numbers
that arrived. Everything it missed was dropped by the drill (the emulators are clear), so the
report's lost figure for voice must match sent - received within 1 %.
"""

import json
import time

import pytest

from labkit import TAG, edge_lab, sweep_dead_labs as _sweep, udp_stream

HOST_B = "192.168.20.2"
_counter = iter(range(300, 400))

@pytest.fixture(scope="session", autouse=True)
def sweep_dead_labs():
    _sweep()
    yield


@pytest.fixture(scope="module")
def lab():
    yield from edge_lab(f"L{TAG}x{next(_counter)}-")


def stream(lab, port, secs, pps=1000):
    return udp_stream(lab.ns("lan-a"), lab.ns("lan-b"), HOST_B, port, secs, pps)


def stream_path(lab, port=5004):
    """The edge path the stream's flow takes now (show flows), waiting for its first packets."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        flows = [f for f in lab.ctl_json("show", "flows") if f.get("dport") == port and f.get("path")]
        if flows:
            return flows[0]["path"]
        time.sleep(0.1)
    raise AssertionError(f"no flow to port {port} in show flows")


def blackout_under_stream(lab):
    """Streams voice, blacks out the uplink its flow takes, returns (path, report, sent, received)."""
    done = stream(lab, 5004, secs=8)
    time.sleep(2)
    path = stream_path(lab)
    uplink = path.split(":")[0]
    p = lab.ctl("drill", "uplink", uplink, "--blackout", "3s", "--json")
    rep = json.loads(p.stdout)
    sent, received = done()
    return path, rep, sent, received


def test_blackout_drill_reports_the_loss_a_receiver_on_lan_b_counted(lab):
    path, rep, sent, received = blackout_under_stream(lab)
    voice = next(c for c in rep["classes"] if c["class"] == "voice")
    if not voice["affected"]:
        # Voice left the path between show flows and the drill's start (a fresh lab's paths
        # still settling): the drill's precondition, not its report, was off. Once more.
        print(f"voice was not on {path} when the drill started: {voice}; once more")
        deadline = time.monotonic() + 10
        while not all(x["state"] == "up" for x in lab.ctl_json("show", "paths")) and time.monotonic() < deadline:
            time.sleep(0.2)
        path, rep, sent, received = blackout_under_stream(lab)
        voice = next(c for c in rep["classes"] if c["class"] == "voice")
    uplink = path.split(":")[0]
    lost_rx = sent - received
    print(f"drill on {uplink}: detection {rep['detection_ms']} ms, voice rerouted after "
          f"{voice['rerouted_ms']} ms, lost {voice['lost']} (receiver: {lost_rx} of {sent})")
    assert rep["state"] == "completed" and rep["action"] == "blackout" and rep["name"] == uplink
    assert rep["paths"] == [path]
    # The early-down rule (docs/measurement.md) takes a path down once nothing came back for
    # 2 x interval (200 ms in the lab). Probe replies return every interval, so the last one may
    # have arrived up to 100 ms before the drill began: 100 ms is the earliest honest detection.
    # Anything earlier would be a path measured down before the failure existed.
    assert rep["detection_ms"] is not None and 100 <= rep["detection_ms"] <= 600, rep
    assert voice["affected"] and voice["rerouted_ms"] is not None and voice["rerouted_ms"] <= 700, voice
    assert lost_rx > 50, f"the blackout cost the stream only {lost_rx} packets: was it on {path}?"
    assert abs(voice["lost"] - lost_rx) <= max(2, 0.01 * lost_rx), (voice, lost_rx)
    assert rep["flows_on_target"] >= 1 and rep["flows_moved"] >= 1, rep
    # The failure is gone: the path comes back and the drill is in the history.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if any(x["name"] == path and x["state"] == "up" for x in lab.ctl_json("show", "paths")):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"{path} did not come back after the drill")
    events = lab.ctl_json("show", "events")
    mine = [e for e in events if e.get("type") in ("drill_start", "drill_end") and e.get("id") == rep["id"]]
    assert [e["type"] for e in mine] == ["drill_start", "drill_end"], events[-10:]
    assert mine[1]["lost"] == rep["lost"] and mine[1]["state"] == "completed"
    hist = lab.ctl_json("show", "drills")
    assert hist[-1]["id"] == rep["id"] and hist[-1]["state"] == "completed"
    table = lab.ctl("show", "drills").stdout
    assert "DETECTION_MS" in table and uplink in table


def test_loss_drill_drops_about_its_share(lab):
    # 5 % loss breaks voice's 1 % SLA: it moves; the report counts what was lost before.
    done = stream(lab, 5004, secs=6)
    time.sleep(1)
    uplink = stream_path(lab).split(":")[0]
    rep = json.loads(lab.ctl("drill", "uplink", uplink, "--loss", "5%", "--duration", "3s", "--json").stdout)
    sent, received = done()
    voice = next(c for c in rep["classes"] if c["class"] == "voice")
    assert rep["action"] == "loss" and rep["loss_pct"] == 5
    assert abs(voice["lost"] - (sent - received)) <= max(2, 0.01 * (sent - received)), (voice, sent, received)
    assert voice["lost"] > 0, (rep, sent, received)


def test_blacking_out_the_last_path_is_refused_unless_forced_and_a_drill_can_be_aborted(lab):
    p = lab.ctl("drill", "peer", "hub", "--blackout", "5s", check=False)
    assert p.returncode != 0
    assert "leaves no usable path to peer hub" in p.stderr and "--force" in p.stderr, p.stderr
    p = lab.ctl("drill", "uplink", "isp9", "--blackout", check=False)
    assert p.returncode != 0 and 'no uplink named "isp9"' in p.stderr, p.stderr
    start = json.loads(lab.ctl("drill", "peer", "hub", "--blackout", "60s", "--force", "--detach", "--json").stdout)
    assert start["state"] == "running" and len(start["paths"]) == 3
    second = lab.ctl("drill", "uplink", "isp2", "--blackout", "1s", check=False)
    assert second.returncode != 0 and "is running" in second.stderr
    time.sleep(1)
    rep = json.loads(lab.ctl("drill", "abort", "--json").stdout)
    assert rep["state"] == "aborted" and rep["id"] == start["id"] and rep["elapsed_ms"] < 30000
    assert rep["detection_ms"] is not None, "every path to the hub went down"
    assert lab.ctl("drill", "abort", check=False).returncode != 0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(x["state"] == "up" for x in lab.ctl_json("show", "paths")):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("paths did not come back after the aborted drill")
