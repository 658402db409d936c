"""The foundation's real-process test: an edge and a hub sdwand on af_packet ports over veths,
carrying LAN traffic between two kernel hosts through the overlay.

    t-lana  eth 192.168.10.2/24 --- lan 192.168.10.1/24  t-edge  isp1 10.1.0.2/24 ---.
                                                                                       |
    t-lanb  eth 192.168.20.2/24 --- lan 192.168.20.1/24  t-hub   isp1 10.1.0.3/24 ---'

The tests share one set of daemons and run in file order; the last one stops them.
"""

import pytest

import netns

EDGE_LAN, HUB_LAN = "192.168.10.1", "192.168.20.1"
HOST_A, HOST_B = "192.168.10.2", "192.168.20.2"
EDGE_UP, HUB_UP = "10.1.0.2", "10.1.0.3"


def appliance_config(name, role, lan_if, lan_addr, up_if, up_addr, next_hop, peer, peer_ep,
                     peer_prefix):
    return {
        "name": name,
        "role": role,
        "lan": {"port": f"af_packet:{lan_if}", "address": lan_addr},
        "uplinks": [{"name": "isp1", "port": f"af_packet:{up_if}", "address": up_addr,
                     "next_hop": next_hop}],
        "peers": [{"name": peer, "endpoints": [{"address": peer_ep}],
                   "prefixes": [peer_prefix]}],
        "lcores": {"control": 0, "workers": [1]},
        "idle": "adaptive",
        "dpdk": {"hugepages": True, "memory_mb": 256},
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

    edge_d = sdwand(lab, edge, "edge", appliance_config(
        "edge", "edge", edge_lan, f"{EDGE_LAN}/24", edge_up, f"{EDGE_UP}/24", HUB_UP,
        "hub", HUB_UP, "192.168.20.0/24"))
    hub_d = sdwand(lab, hub, "hub", appliance_config(
        "hub", "hub", hub_lan, f"{HUB_LAN}/24", hub_up, f"{HUB_UP}/24", EDGE_UP,
        "edge", EDGE_UP, "192.168.10.0/24"))
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


def test_sigterm_shuts_down_cleanly(site):
    for name in ("edge", "hub"):
        d = site[name]
        assert d.running(), f"sdwand {name} died during the tests; its output:\n{d.log()}"
        assert d.stop() == 0
        assert not d.socket.exists()
