"""The foundation's real-process test: an edge and a hub sdwand on af_packet ports over veths,
carrying LAN traffic between two kernel hosts through the overlay.

    t-lana  eth 192.168.10.2/24 --- lan 192.168.10.1/24  t-edge  isp1 10.1.0.2/24 ---.
                                                                                       |
    t-lanb  eth 192.168.20.2/24 --- lan 192.168.20.1/24  t-hub   isp1 10.1.0.3/24 ---'

Every packet between them is ESP: both use one master key file (mode 0600) in the test's
temporary directory, and each keeps its epoch store there too.

The tests share one set of daemons and run in file order; the last one stops them.
"""

import os
import re
import secrets
import time

import pytest

import netns

EDGE_LAN, HUB_LAN = "192.168.10.1", "192.168.20.1"
HOST_A, HOST_B = "192.168.10.2", "192.168.20.2"
EDGE_UP, HUB_UP = "10.1.0.2", "10.1.0.3"


def appliance_config(name, role, lan_if, lan_addr, up_if, up_addr, next_hop, peer, peer_ep,
                     peer_prefix, key_file, epoch_store):
    return {
        "name": name,
        "role": role,
        "lan": {"port": f"af_packet:{lan_if}", "address": lan_addr},
        "uplinks": [{"name": "isp1", "port": f"af_packet:{up_if}", "address": up_addr,
                     "next_hop": next_hop}],
        "peers": [{"name": peer, "key_file": str(key_file), "endpoints": [{"address": peer_ep}],
                   "prefixes": [peer_prefix]}],
        "esp": {"epoch_store": str(epoch_store)},
        "lcores": {"control": 0, "workers": [1]},
        "idle": "adaptive",
        "dpdk": {"hugepages": True, "memory_mb": 256},
        # issue 6: one class with an SLA; everything else (the pings) goes to the default.
        "classes": [{"name": "voice", "match": [{"proto": "udp", "dport": 5004}],
                     "sla": {"latency_ms": 150, "jitter_ms": 30, "loss_pct": 1}, "mode": "best"},
                    {"name": "bulk", "default": True, "mode": "best"}],
    }


@pytest.fixture(scope="module")
def site(module_lab, sdwand):
    lab = module_lab
    lana, edge, hub, lanb = (lab.netns(r) for r in ("lana", "edge", "hub", "lanb"))
    a_if, edge_lan = lab.veth(lana, edge)
    edge_up, hub_up = lab.veth(edge, hub)
    hub_lan, b_if = lab.veth(hub, lanb)
    lab.host(lana, a_if, f"{HOST_A}/24", gateway=EDGE_LAN)
    lab.host(lanb, b_if, f"{HOST_B}/24", gateway=HUB_LAN)

    # O_EXCL and mode 0600 at creation: the key is never readable by anyone else.
    key_file = lab.workdir / "master.key"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32) + "\n")

    edge_d = sdwand(lab, edge, "edge", appliance_config(
        "edge", "edge", edge_lan, f"{EDGE_LAN}/24", edge_up, f"{EDGE_UP}/24", HUB_UP,
        "hub", HUB_UP, "192.168.20.0/24", key_file, lab.workdir / "edge.epochs"))
    hub_d = sdwand(lab, hub, "hub", appliance_config(
        "hub", "hub", hub_lan, f"{HUB_LAN}/24", hub_up, f"{HUB_UP}/24", EDGE_UP,
        "edge", EDGE_UP, "192.168.10.0/24", key_file, lab.workdir / "hub.epochs"))
    return {"lab": lab, "lana": lana, "lanb": lanb, "edge": edge_d, "hub": hub_d}


def items(data, key):
    """The list a --json answer carries: the answer itself or its `key` member."""
    if isinstance(data, dict) and key in data:
        data = data[key]
    assert isinstance(data, list), f"expected a list of {key}, got {data!r}"
    return data


def link_up(port):
    return port.get("link") == "up"


@pytest.mark.parametrize("appliance", ["edge", "hub"])
def test_show_ports_lists_lan_and_uplink_with_link_up(site, appliance):
    d = site[appliance]
    seen = {}

    def ports_up():
        seen.clear()
        seen.update({p.get("name"): p for p in items(d.ctl_json("show", "ports"), "ports")})
        return all(n in seen and link_up(seen[n]) for n in ("lan", "isp1"))

    try:
        netns.wait_for(ports_up, timeout=5, interval=0.2, what=f"{appliance}: lan and isp1 up")
    except AssertionError as e:
        raise AssertionError(f"{e}; ports: {seen}") from None


def test_edge_path_to_hub_comes_up(site):
    edge = site["edge"]

    def path_up():
        paths = items(edge.ctl_json("show", "paths"), "paths")
        for p in paths:
            for key in ("name", "uplink", "peer", "state"):
                assert key in p, f"path object without {key!r}: {p}"
        mine = [p for p in paths if p["uplink"] == "isp1" and p["peer"] == "hub"]
        assert len(mine) == 1, f"expected one isp1->hub path, got {paths}"
        return mine[0] if mine[0]["state"] == "up" else None

    netns.wait_for(path_up, timeout=5, interval=0.2, what="edge path isp1 -> hub state up")


def test_lan_host_pings_its_gateway(site):
    sent, received, out = netns.ping(site["lana"], EDGE_LAN, count=5)
    assert received == sent, f"lan-a -> edge LAN address {EDGE_LAN}:\n{out}\n" \
                             f"edge output:\n{site['edge'].log()}"


def test_lan_a_pings_lan_b_through_the_overlay(site):
    lana = site["lana"]
    # Warm-up: ARP on both LANs and toward the next hops.
    netns.wait_for(lambda: netns.ping(lana, HOST_B, count=1, wait=1)[1] == 1, timeout=15,
                   interval=0.2, what=f"first reply from {HOST_B}")
    sent, received, out = netns.ping(lana, HOST_B, count=20, interval=0.2, wait=2)
    assert sent == 20 and received == 20, (
        f"{HOST_A} -> {HOST_B}: {sent - received} of {sent} lost\n{out}\n"
        f"edge stats: {site['edge'].ctl('show', 'stats', check=False).stdout}\n"
        f"hub stats: {site['hub'].ctl('show', 'stats', check=False).stdout}")


def test_show_classes_lists_the_configured_classes(site):
    edge = site["edge"]

    def chosen():
        rows = items(edge.ctl_json("show", "classes"), "classes")
        return rows if rows and all(r["primary"] == "isp1:hub" for r in rows) else None
    rows = netns.wait_for(chosen, timeout=15, what="every class of the edge on isp1:hub")
    assert [r["class"] for r in rows] == ["voice", "bulk"], rows
    voice = rows[0]
    assert voice["peer"] == "hub" and voice["mode"] == "best", voice
    assert voice["sla"] == {"latency_ms": 150, "jitter_ms": 30, "loss_pct": 1}, voice
    assert voice["sla_met"] is True and voice["state"].startswith("met"), voice
    assert [p["name"] for p in voice["paths"]] == ["isp1:hub"], voice
    # The pings were sent to the hub in the default class.
    assert rows[1]["packets"] >= 20, rows[1]
    table = edge.ctl("show", "classes").stdout
    assert "CLASS" in table and "voice" in table and "isp1:hub" in table, table


def test_show_flows_lists_the_ping_flow_with_its_class_and_path(site):
    edge = site["edge"]
    flows = items(edge.ctl_json("show", "flows"), "flows")
    pings = [f for f in flows if f.get("proto") == "icmp" and f.get("src") == HOST_A and f.get("dst") == HOST_B]
    assert pings, flows
    f = pings[0]
    assert f["class"] == "bulk" and f["path"] == "isp1:hub" and f["uplink"] == "isp1", f
    assert f["packets"] >= 1 and f["age_s"] >= f["idle_s"] >= 0, f
    assert items(edge.ctl_json("show", "flows", "--class", "voice"), "flows") == []
    bad = edge.ctl("show", "flows", "--class", "nope", check=False)
    assert bad.returncode == 1 and "voice" in bad.stderr and "bulk" in bad.stderr, bad
    table = edge.ctl("show", "flows").stdout
    assert "PROTO" in table and "icmp" in table, table


def test_explain_names_the_path(site):
    edge = site["edge"]
    out = edge.ctl("explain", "voice").stdout
    assert out.strip() and "isp1:hub" in out, out
    lines = edge.ctl_json("explain", "voice")
    assert isinstance(lines, list) and any("isp1:hub" in line for line in lines), lines
    bad = edge.ctl("explain", "nope", check=False)
    assert bad.returncode == 1 and "voice" in bad.stderr, bad


@pytest.mark.parametrize("appliance", ["edge", "hub"])
def test_show_sas_lists_active_sas_that_carried_the_pings(site, appliance):
    d = site[appliance]
    sas = items(d.ctl_json("show", "sas"), "sas")
    for sa in sas:
        for key in ("spi", "path", "direction", "epoch", "state", "packets", "bytes", "replay",
                    "too_old", "icv_fail", "bad_trailer"):
            assert key in sa, f"SA object without {key!r}: {sa}"
        assert sa["spi"].startswith("0x5d00") and len(sa["spi"]) == 10, sa
        assert not any("key" in k for k in sa), f"an SA object must not carry keys: {sa}"
    mine = [sa for sa in sas if sa["path"] == f"isp1:{'hub' if appliance == 'edge' else 'edge'}"]
    out = [sa for sa in mine if sa["direction"] == "out" and sa["state"] == "active"]
    inb = [sa for sa in mine if sa["direction"] == "in" and sa["state"] == "active"]
    assert len(out) == 1 and out[0]["packets"] > 0, f"{appliance}: no active outbound SA with packets: {sas}"
    assert len(inb) >= 1 and all(sa["packets"] > 0 for sa in inb), \
        f"{appliance}: no active inbound SA with packets: {sas}"
    assert all(sa["icv_fail"] == 0 and sa["replay"] == 0 for sa in mine), sas
    # The peer's outbound SA is our active inbound one: same SPI and epoch on both sides.
    stats = d.ctl_json("show", "stats")
    esp = stats["esp"]
    assert esp["encrypted_pkts"] > 0 and esp["decrypted_pkts"] > 0, esp
    assert esp["drops"]["icv_fail"] == 0 and "unknown_spi" in esp["drops"], esp


PATH_FIELDS = ("name", "uplink", "peer", "endpoint", "state", "since", "rtt_ms", "rtt_p95_ms",
               "jitter_ms", "loss_fwd_pct", "loss_rev_pct", "probes_sent", "probes_received",
               "reason")
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def the_path(d, peer):
    paths = items(d.ctl_json("show", "paths"), "paths")
    mine = [p for p in paths if p["uplink"] == "isp1" and p["peer"] == peer]
    assert len(mine) == 1, f"expected one isp1 -> {peer} path, got {paths}"
    return mine[0]


@pytest.mark.parametrize("appliance", ["edge", "hub"])
def test_both_sides_measure_their_path_up_with_a_small_rtt(site, appliance):
    """Both ends probe (STAMP in the path's ESP SA, every 100 ms by default) and reflect: each
    side's path is up with the RTT of two veths (well under 50 ms here), and its probe counters
    keep growing."""
    d = site[appliance]
    peer = "hub" if appliance == "edge" else "edge"

    def measured_up():
        p = the_path(d, peer)
        return p if p["state"] == "up" and p["rtt_ms"] is not None else None

    first = netns.wait_for(measured_up, timeout=5, interval=0.2, what=f"{appliance}: path up with an RTT")
    for key in PATH_FIELDS:
        assert key in first, f"path object without {key!r}: {first}"
    assert first["reason"] == "", first
    assert RFC3339_UTC.match(first["since"]), first
    assert 0 < first["rtt_ms"] < 50, first
    assert first["rtt_p95_ms"] is not None and first["rtt_p95_ms"] >= first["rtt_ms"] * 0.5, first
    assert first["jitter_ms"] is not None and first["jitter_ms"] >= 0, first
    assert first["probes_sent"] > 0 and first["probes_received"] > 0, first
    time.sleep(1.0)
    later = the_path(d, peer)
    # 1 s at 100 ms is 10 probes; allow the scheduler and the control tick some slack.
    assert later["probes_sent"] >= first["probes_sent"] + 5, (first, later)
    assert later["probes_received"] >= first["probes_received"] + 5, (first, later)
    assert later["state"] == "up" and later["loss_fwd_pct"] < 5 and later["loss_rev_pct"] < 5, later
    # The data counters count the pings, not the probes (probes have their own counters).
    if appliance == "edge":
        assert later["tx_pkts"] >= 20 and later["tx_pkts"] < later["probes_sent"], later


@pytest.mark.parametrize("appliance", ["edge", "hub"])
def test_show_events_lists_the_path_going_up_with_its_reason(site, appliance):
    d = site[appliance]
    peer = "hub" if appliance == "edge" else "edge"
    events = items(d.ctl_json("show", "events"), "events")
    for e in events:
        for key in ("time", "seq", "type", "name"):
            assert key in e, f"event without {key!r}: {e}"
        assert RFC3339_UTC.match(e["time"]), e
        assert e["name"] == appliance, e
    changes = [e for e in events if e["type"] in ("path_up", "path_down", "path_damped")]
    for e in changes:
        for key in ("path", "uplink", "peer", "endpoint", "from", "to", "reason"):
            assert key in e, f"path event without {key!r}: {e}"
    ups = [e for e in changes if e["path"] == f"isp1:{peer}" and e["type"] == "path_up"]
    assert ups, f"{appliance}: no event of isp1:{peer} going up: {events}"
    assert ups[0]["from"] == "down" and ups[0]["to"] == "up", ups[0]
    assert re.fullmatch(r"\d+ good probes", ups[0]["reason"]), ups[0]
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events), "events are oldest first"
    table = d.ctl("show", "events").stdout
    assert table.splitlines()[0].split() == ["TIME", "TYPE", "SUBJECT", "DETAIL"], table
    assert re.search(rf"Z +path_up +isp1:{peer} +down -> up: \d+ good probes\n", table), table
    only = items(d.ctl_json("show", "events", "--type", "path_up"), "events")
    assert only and all(e["type"] == "path_up" for e in only), only


def test_show_and_watch_paths_print_the_measured_columns(site):
    edge = site["edge"]
    table = edge.ctl("show", "paths").stdout
    header = table.splitlines()[0].split()
    for col in ("NAME", "STATE", "SINCE", "RTT_MS", "P95_MS", "JITTER_MS", "LOSS_FWD%", "LOSS_REV%",
                "PROBES_TX", "PROBES_RX", "REASON"):
        assert col in header, table
    # Not a terminal here: plain tables one after another, no escape sequences.
    p = edge.ctl("watch", "paths", "--interval", "0.2", "--count", "3", timeout=10)
    assert p.stdout.count("RTT_MS") == 3 and "\x1b" not in p.stdout, p.stdout
    assert p.stdout.count("isp1:hub") == 3, p.stdout


def test_both_sides_agree_on_the_sas(site):
    def active(name, direction):
        return {(sa["spi"], sa["epoch"]) for sa in items(site[name].ctl_json("show", "sas"), "sas")
                if sa["direction"] == direction and sa["state"] == "active"}
    assert active("edge", "out") <= active("hub", "in")
    assert active("hub", "out") <= active("edge", "in")
    # The epoch stores hold what each side sent under.
    lab = site["lab"]
    for name in ("edge", "hub"):
        text = (lab.workdir / f"{name}.epochs").read_text()
        assert "10.1.0.2:4500 10.1.0.3:4500" in text or "10.1.0.3:4500 10.1.0.2:4500" in text, text


def test_edge_restarts_at_a_new_epoch_and_the_hub_follows(site):
    """After a restart the edge's sequence numbers start at 1 again, so it must send under an
    epoch it never used (its epoch store); the hub accepts it (inbound installed ahead) and
    moves its own outbound to it (docs/keys.md "Epochs across restarts")."""
    edge, hub = site["edge"], site["hub"]
    assert edge.stop() == 0
    edge.start()

    def out_epoch(d):
        sas = items(d.ctl_json("show", "sas"), "sas")
        return next((sa["epoch"] for sa in sas if sa["direction"] == "out"), None)

    assert out_epoch(edge) == 1, edge.ctl("show", "sas", check=False).stdout
    lana = site["lana"]
    netns.wait_for(lambda: netns.ping(lana, HOST_B, count=1, wait=1)[1] == 1, timeout=15,
                   interval=0.2, what=f"first reply from {HOST_B} after the edge restarted")
    sent, received, out = netns.ping(lana, HOST_B, count=10, interval=0.2, wait=2)
    assert received == sent, f"after the restart: {sent - received} of {sent} lost\n{out}"
    assert out_epoch(hub) == 1, hub.ctl("show", "sas", check=False).stdout
    assert " 1\n" in (site["lab"].workdir / "edge.epochs").read_text()


def test_sigterm_shuts_down_cleanly(site):
    for name in ("edge", "hub"):
        d = site[name]
        assert d.running(), f"sdwand {name} died during the tests; its output:\n{d.log()}"
        assert d.stop() == 0
        assert not d.socket.exists()
