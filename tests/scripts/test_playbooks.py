"""The example playbooks of scripts/playbooks (docs/events.md "Playbooks"), run as sdwand runs a
hook: the event's JSON line on standard input. Real tools, nothing mocked: curl against an HTTP
server on loopback, files in a temporary directory, nft in a network namespace of its own."""

from __future__ import annotations

import http.server
import json
import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PLAYBOOKS = REPO / "scripts" / "playbooks"

PATH_DOWN = {"time": "2025-03-14T09:26:53.589Z", "seq": 17, "type": "path_down", "name": "edge",
             "path": "isp1:hub", "uplink": "isp1", "peer": "hub", "endpoint": "10.1.1.2:4500",
             "from": "up", "to": "down", "reason": "missed 3 probes"}
CLASS_MOVED = {"time": "2025-03-14T09:26:53.601Z", "seq": 18, "type": "class_moved", "name": "edge",
               "class": "voice", "peer": "hub", "mode": "best", "from": ["isp1:hub"], "to": ["isp2:hub"],
               "primary": "isp2:hub", "reason": "met (isp2:hub complies)"}


def run(name: str, event, *args: str, env: dict | None = None, timeout: float = 30,
        netns: str | None = None) -> subprocess.CompletedProcess:
    line = event if isinstance(event, str) else json.dumps(event) + "\n"
    cmd = [str(PLAYBOOKS / name), *args]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    return subprocess.run(cmd, input=line, capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


# --- webhook-alert -------------------------------------------------------------------------

class Hook(http.server.BaseHTTPRequestHandler):
    status = 200
    received: list[tuple[str, dict, bytes]] = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        Hook.received.append((self.path, dict(self.headers), body))
        self.send_response(Hook.status)
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"thanks" if Hook.status < 400 else b"no such channel")

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hook.received, Hook.status = [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_webhook_posts_the_event_as_json_with_a_summary(webhook):
    p = run("webhook-alert", PATH_DOWN, webhook + "/alerts", env={"SDWAN_WEBHOOK_HEADER": "Authorization: Bearer t0k"})
    assert p.returncode == 0, p.stderr
    assert p.stdout == "thanks"
    assert len(Hook.received) == 1
    path, headers, body = Hook.received[0]
    assert path == "/alerts"
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer t0k"
    sent = json.loads(body)
    assert sent == {"text": "edge: path_down isp1:hub: missed 3 probes", "event": PATH_DOWN}


def test_webhook_takes_its_url_from_the_environment_and_names_a_class(webhook):
    p = run("webhook-alert", CLASS_MOVED, env={"SDWAN_WEBHOOK_URL": webhook + "/x"})
    assert p.returncode == 0, p.stderr
    assert json.loads(Hook.received[0][2])["text"] == "edge: class_moved voice: met (isp2:hub complies)"


def test_webhook_fails_when_the_server_refuses(webhook):
    Hook.status = 404
    p = run("webhook-alert", PATH_DOWN, webhook)
    assert p.returncode == 22, (p.returncode, p.stdout, p.stderr)
    assert "404" in p.stderr and "no such channel" in p.stdout


def test_webhook_fails_fast_without_a_server():
    p = run("webhook-alert", PATH_DOWN, "http://127.0.0.1:9/", env={"SDWAN_WEBHOOK_TIMEOUT": "2"})
    assert p.returncode == 7, (p.returncode, p.stderr)  # curl: could not connect
    assert "127.0.0.1" in p.stderr


def test_webhook_usage_errors(webhook):
    env = {"SDWAN_WEBHOOK_URL": ""}
    p = run("webhook-alert", PATH_DOWN, env=env)
    assert p.returncode == 2 and "no URL" in p.stderr
    p = run("webhook-alert", "not json\n", webhook)
    assert p.returncode == 2 and "not an sdwand event" in p.stderr
    p = run("webhook-alert", "[1, 2]\n", webhook)
    assert p.returncode == 2
    assert Hook.received == []


# --- ticket-file ---------------------------------------------------------------------------

def test_ticket_file_is_written_whole_under_a_unique_name(tmp_path):
    spool = tmp_path / "tickets"  # made by the playbook
    p = run("ticket-file", PATH_DOWN, str(spool))
    assert p.returncode == 0, p.stderr
    name = "edge-20250314T092653.589Z-17-path_down.json"
    assert p.stdout.strip() == str(spool / name)
    assert sorted(os.listdir(spool)) == [name], "no temporary file left behind"
    f = spool / name
    assert stat.S_IMODE(f.stat().st_mode) == 0o644
    t = json.loads(f.read_text())
    assert t["ticket"] == "edge-17"
    assert t["severity"] == "major"
    assert t["summary"] == "edge: path_down isp1:hub: missed 3 probes"
    assert t["event"] == PATH_DOWN
    assert t["opened"].endswith("Z") and len(t["opened"]) == len("2025-03-14T09:26:53.589Z")

    p = run("ticket-file", CLASS_MOVED, env={"SDWAN_TICKET_DIR": str(spool)})
    assert p.returncode == 0, p.stderr
    assert json.loads(Path(p.stdout.strip()).read_text())["severity"] == "minor"
    assert len(os.listdir(spool)) == 2


def test_ticket_file_refuses_bad_input_and_an_unwritable_directory(tmp_path):
    p = run("ticket-file", '{"no": "type"}\n', str(tmp_path))
    assert p.returncode == 2 and "not an sdwand event" in p.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    p = run("ticket-file", PATH_DOWN, str(blocker / "tickets"))
    assert p.returncode == 1 and "tickets" in p.stderr, (p.returncode, p.stderr)
    assert list(tmp_path.iterdir()) == [blocker]


# --- nft-block -----------------------------------------------------------------------------

@pytest.fixture
def netns():
    if os.geteuid() != 0:
        pytest.fail("the nft playbook test needs root (a network namespace)", pytrace=False)
    name = f"sdwan-pb-{os.getpid()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def ruleset(ns: str) -> dict:
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset"], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


def ping(ns: str, addr: str) -> bool:
    return subprocess.run(["ip", "netns", "exec", ns, "ping", "-c", "1", "-W", "1", addr],
                          capture_output=True).returncode == 0


def test_nft_block_creates_its_table_once_and_blocks_the_address(netns):
    assert ping(netns, "127.0.0.2") and ping(netns, "127.0.0.3")
    event = dict(PATH_DOWN, endpoint="127.0.0.2:4500")
    for _ in range(2):  # twice: the second run changes nothing but is fine
        p = run("nft-block", event, netns=netns)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == "blocked 127.0.0.2 (inet sdwan_playbook @blocked, for 1h)"
    items = ruleset(netns)["nftables"]
    tables = [i["table"] for i in items if "table" in i]
    assert [(t["family"], t["name"]) for t in tables] == [("inet", "sdwan_playbook")]
    sets = [i["set"] for i in items if "set" in i]
    assert len(sets) == 1 and sets[0]["name"] == "blocked" and sets[0]["type"] == "ipv4_addr"
    elems = sets[0]["elem"]
    assert len(elems) == 1 and elems[0]["elem"]["val"] == "127.0.0.2", elems
    chains = {c["chain"]["name"]: c["chain"] for c in items if "chain" in c}
    assert chains["input"]["hook"] == "input" and chains["output"]["hook"] == "output"
    rules = [i["rule"] for i in items if "rule" in i]
    assert sorted(r["chain"] for r in rules) == ["input", "output"], "one rule per chain, even after two runs"
    # It blocks: the host's own traffic to the address is dropped, to others not.
    assert not ping(netns, "127.0.0.2")
    assert ping(netns, "127.0.0.3")


def test_nft_block_takes_a_field_and_options(netns):
    event = {"time": "2025-03-14T09:26:53.589Z", "seq": 3, "type": "app_failing", "name": "edge",
             "app": "crm", "target": "192.0.2.7"}
    p = run("nft-block", event, "--field", "target", "--table", "pb", "--set", "bad", "--timeout", "0", netns=netns)
    assert p.returncode == 0, p.stderr
    items = ruleset(netns)["nftables"]
    sets = [i["set"] for i in items if "set" in i]
    assert sets[0]["name"] == "bad" and [e if isinstance(e, str) else e["elem"]["val"] for e in sets[0]["elem"]] == ["192.0.2.7"]
    assert {(i["table"]["name"]) for i in items if "table" in i} == {"pb"}


def test_nft_block_refuses_events_without_an_address(netns):
    for event, args in ((CLASS_MOVED, ()), (dict(PATH_DOWN, endpoint="hub.example:4500"), ()),
                        (PATH_DOWN, ("--field", "nothing")), ("garbage\n", ())):
        p = run("nft-block", event, *args, netns=netns)
        assert p.returncode == 2 and "no IPv4 address" in p.stderr, (event, p.stderr)
    p = run("nft-block", PATH_DOWN, "--timeout", "soon", netns=netns)
    assert p.returncode == 2 and "--timeout" in p.stderr
    p = run("nft-block", PATH_DOWN, "--table", "a b", netns=netns)
    assert p.returncode == 2
    assert "sdwan_playbook" not in json.dumps(ruleset(netns)), "nothing was created"
