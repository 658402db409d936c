"""ESP on the wire (issue #4), checked from outside the appliances.

A lab (scripts/lab up, private prefix) runs real traffic from lan-a to lan-b and back while
tcpdump records both links of every ISP (ispN-e, towards the edge, and ispN-h, towards the
hub). The edge uses the first usable path, so the test takes isp1 and then isp2 down (their
links inside the ISP namespace, which the appliances see as carrier loss) to move the traffic
over every ISP in turn. Then, with the lab's key log and decoders that share no code with
the daemon:

- every frame between the appliances is ESP in UDP 4500 (ARP and ICMP errors about tunnel
  packets aside): nothing in the clear;
- every ESP packet authenticates and decrypts with scapy's SecurityAssociation (ESN on, the
  high 32 bits are 0 in a run this short) and with a second AES-GCM decoder that also checks
  the RFC 4303 trailer; the payload (next header 253) is the 16-byte overlay header and an
  inner IPv4 packet; no (SA, IV) and no (SA, sequence number) is used twice;
- every packet lan-a or lan-b sent is in some capture, decrypted, byte for byte with its TTL
  one lower; every decrypted packet is one of them;
- a flipped bit fails the ICV, so the checker can fail;
- a second lab with `--esn off` is checked the same way and by tshark (Wireshark 4.0 cannot
  check ESN ICVs): esp.icv_good == 1 on every ESP frame, and not on a tampered one;
- the random marker in the traffic's payloads is never in an ISP capture file.

Both labs run without the edge's application checks (their `apps` section removed, with a copy
of scripts/lab as labkit.lab_script_with makes): web-b's HTTP GET from the edge's own host stack
(192.168.10.1) would cross the ISP links at times no test controls, and "every decrypted packet
is one lan-a or lan-b sent" is only a sharp check when those hosts are the only senders.

The offline test at the end checks the same decoders against packets scapy seals itself, so
a wrong checker shows up without a lab. Set SDWAN_ESP_KEEP=DIR to keep the captures and key
logs of a run (they are removed otherwise, failed or not).
"""

from __future__ import annotations

import csv
import json
import os
import re
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP, IPSecIntegrityError, SecurityAssociation
from scapy.layers.l2 import Ether
from scapy.packet import Raw, raw
from scapy.utils import RawPcapReader, wrpcap

from labkit import ISPS, TAG, Tcpdump, lab_cmd, lab_script_with, require as _require
from labkit import sweep_dead_labs

HOST_A, HOST_B = "192.168.10.2", "192.168.20.2"
ESP_PORT = 4500
NH_OVERLAY = 253
OVERLAY_LEN = 16
PROBE_LEN = 44 + 32  # STAMP packet + our counters (docs/wire-format.md "Probes")
GCM_ALGO = "AES-GCM with 16 octet ICV [RFC4106]"
ECHO_PORT = 7777
PHASE_PINGS = 10
PHASE_DATAGRAMS = 24
# The prefix shape the sweep recognises (L<pid>x<n>-), with numbers no other module uses.
_counter = iter(range(500, 600))


@pytest.fixture(scope="module", autouse=True)
def _sweep_dead_labs():
    """Removes labs of earlier runs whose pytest process died before its teardown."""
    sweep_dead_labs()


# --- the key log ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SaKey:
    src: str
    dst: str
    spi: int
    key: bytes  # 32-byte AES-256 key || 4-byte RFC 4106 salt
    line: str   # the key log line, as Wireshark's esp_sa UAT takes it


def parse_keylog(text: str) -> dict[tuple[str, str, int], SaKey]:
    """Wireshark esp_sa lines -> SAs by (outer source, outer destination, SPI). Anything that is
    not such a line, or two different keys for one SA, is an error: the format is a contract."""
    sas: dict[tuple[str, str, int], SaKey] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        f = next(csv.reader([line]))
        where = f"key log line {n}: {line!r}"
        assert len(f) == 8, f"{where}: expected 8 fields, got {len(f)}"
        assert f[0] == "IPv4", where
        assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+", f[1]) and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", f[2]), where
        assert re.fullmatch(r"0x[0-9a-fA-F]{8}", f[3]), f"{where}: SPI is not 0x + 8 hex digits"
        assert f[4] == GCM_ALGO, f"{where}: encryption is not {GCM_ALGO!r}"
        assert re.fullmatch(r"0x[0-9a-fA-F]{72}", f[5]), f"{where}: key is not 0x + 72 hex digits (key || salt)"
        assert f[6] == "NULL" and f[7] == "", f"{where}: authentication must be NULL with no key (GCM has its ICV)"
        sa = SaKey(f[1], f[2], int(f[3], 16), bytes.fromhex(f[5][2:]), line)
        k = (sa.src, sa.dst, sa.spi)
        assert k not in sas or sas[k].key == sa.key, f"{where}: a second, different key for SPI {f[3]}"
        sas.setdefault(k, sa)
    return sas


# --- decoders ------------------------------------------------------------------------------

def scapy_open(sa: SaKey, esp: bytes, esn: bool, esn_high: int = 0) -> tuple[int, bytes]:
    """Decrypts one ESP packet (SPI onwards) with scapy; returns (next header, payload).
    Raises IPSecIntegrityError when the ICV does not verify.

    scapy 2.5 gets ESP-in-UDP wrong: its NAT-T encrypt freezes the UDP length at 8 before the
    ESP is appended. So the UDP header is left out here and the bare ESP packet goes through a
    tunnel-mode SA, whose decrypt drops the outer header and keeps the payload untouched."""
    sa_ = SecurityAssociation(ESP, spi=sa.spi, crypt_algo="AES-GCM", crypt_key=sa.key,
                              tunnel_header=IP(src=sa.src, dst=sa.dst), esn_en=esn, esn=esn_high)
    outer = IP(raw(IP(src=sa.src, dst=sa.dst, proto=50) / Raw(esp)))
    payload = sa_.decrypt(outer)
    return outer.proto, raw(payload)  # decrypt() sets the outer header's proto to ESP's next header


def gcm_open(sa: SaKey, esp: bytes, esn: bool, esn_high: int = 0) -> bytes:
    """The same with the cryptography package directly (RFC 4106: nonce = salt || IV; AAD =
    SPI || [high 32 bits of the sequence number] || low 32 bits); returns the whole plaintext,
    trailer included, or raises InvalidTag."""
    spi, seq = struct.unpack("!II", esp[:8])
    aad = struct.pack("!III", spi, esn_high, seq) if esn else esp[:8]
    return AESGCM(sa.key[:32]).decrypt(sa.key[32:] + esp[8:16], esp[16:], aad)


def seal(sa: SaKey, payload: bytes, seq: int, esn: bool, nh: int = NH_OVERLAY, esn_high: int = 0) -> bytes:
    """An Ethernet frame carrying payload as ESP in UDP 4500, sealed by scapy (for the offline
    checks). Transport mode on an IP header whose protocol is nh makes scapy's ESP carry that
    next header; the UDP header is built here (see scapy_open)."""
    s = SecurityAssociation(ESP, spi=sa.spi, crypt_algo="AES-GCM", crypt_key=sa.key, esn_en=esn, esn=esn_high)
    enc = s.encrypt(IP(src=sa.src, dst=sa.dst, proto=nh) / Raw(payload), seq_num=seq)
    return raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
               / IP(src=sa.src, dst=sa.dst, flags="DF", ttl=64)
               / UDP(sport=ESP_PORT, dport=ESP_PORT, chksum=0) / Raw(raw(enc[ESP])))


# --- frames ---------------------------------------------------------------------------------

@dataclass
class Wire:
    """One frame of an ISP capture, classified."""
    capture: str
    number: int        # 1-based, as tshark counts
    kind: str          # esp, arp, icmp-error, cleartext
    why: str = ""
    src: str = ""
    dst: str = ""
    esp: bytes = b""   # UDP payload of an ESP frame (SPI onwards)


def _ip(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def classify(capture: str, number: int, frame: bytes) -> Wire:
    """What may cross an ISP between the appliances: ESP in UDP 4500 both ways, ARP, and ICMP
    errors about such packets. Everything else is cleartext that should not be there."""
    def bad(why: str) -> Wire:
        return Wire(capture, number, "cleartext", why)
    if len(frame) < 14:
        return bad("runt frame")
    etype = struct.unpack("!H", frame[12:14])[0]
    if etype == 0x0806:
        return Wire(capture, number, "arp")
    if etype != 0x0800:
        return bad(f"ethertype 0x{etype:04x}")
    ip = frame[14:]
    if len(ip) < 20 or ip[0] >> 4 != 4:
        return bad("not an IPv4 header")
    ihl = (ip[0] & 15) * 4
    total = struct.unpack("!H", ip[2:4])[0]
    frag = struct.unpack("!H", ip[6:8])[0]
    src, dst, proto = _ip(ip[12:16]), _ip(ip[16:20]), ip[9]
    if total > len(ip) or ihl < 20:
        return bad(f"IPv4 {src} -> {dst}: truncated")
    ip = ip[:total]
    if frag & 0x3FFF:
        return bad(f"IPv4 fragment {src} -> {dst} (proto {proto})")
    l4 = ip[ihl:]
    if proto == 17 and len(l4) >= 8:
        sport, dport, ulen = struct.unpack("!HHH", l4[:6])
        if (sport, dport) == (ESP_PORT, ESP_PORT):
            esp = l4[8:ulen]
            if ulen != len(l4):
                return bad(f"UDP 4500 {src} -> {dst}: UDP length {ulen}, IP payload {len(l4)}")
            if len(esp) < 8 + 8 + 16 + 4 or esp[:4] == b"\0\0\0\0":
                return bad(f"UDP 4500 {src} -> {dst}: not an ESP packet ({len(esp)} bytes, SPI {esp[:4].hex()})")
            return Wire(capture, number, "esp", src=src, dst=dst, esp=esp)
        return bad(f"UDP {src}:{sport} -> {dst}:{dport}")
    if proto == 1 and len(l4) >= 8 + 28 and l4[0] in (3, 11):
        q = l4[8:]
        qihl = (q[0] & 15) * 4
        if q[9] == 17 and len(q) >= qihl + 4 and ESP_PORT in struct.unpack("!HH", q[qihl:qihl + 4]):
            return Wire(capture, number, "icmp-error", f"ICMP type {l4[0]} about a tunnel packet", src, dst)
    return bad(f"IPv4 {src} -> {dst} proto {proto}")


def read_frames(pcap: Path) -> list[bytes]:
    return [bytes(data) for data, _meta in RawPcapReader(str(pcap))]


def expected_inner(ip: bytes) -> bytes:
    """What a router forwards: the packet with its TTL one lower and the header checksum redone."""
    ihl = (ip[0] & 15) * 4
    hdr = bytearray(ip[:ihl])
    assert hdr[8] > 1, "sent with TTL <= 1"
    hdr[8] -= 1
    hdr[10:12] = b"\0\0"
    s = sum(struct.unpack(f"!{ihl // 2}H", bytes(hdr)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    hdr[10:12] = struct.pack("!H", ~s & 0xFFFF)
    return bytes(hdr) + ip[ihl:]


def lan_sent(pcap: Path, src: str, dst: str) -> list[bytes]:
    """IPv4 packets from src to dst in a capture on a LAN host's own interface."""
    out = []
    for f in read_frames(pcap):
        if len(f) >= 34 and f[12:14] == b"\x08\x00" and _ip(f[26:30]) == src and _ip(f[30:34]) == dst:
            out.append(f[14:14 + struct.unpack("!H", f[16:18])[0]])
    return out


@dataclass
class Opened:
    """One distinct ESP packet and what the decoders made of it."""
    wire: Wire
    spi: int
    seq: int
    iv: bytes
    error: str = ""          # why it does not check out ("" = it does)
    nh: int = -1
    overlay: bytes = b""
    inner: bytes = b""


def check_esp(w: Wire, sas: dict, esn: bool) -> Opened:
    spi, seq = struct.unpack("!II", w.esp[:8])
    o = Opened(w, spi, seq, w.esp[8:16])
    sa = sas.get((w.src, w.dst, spi))
    if sa is None:
        o.error = f"no key log line for {w.src} -> {w.dst} SPI 0x{spi:08x}"
        return o
    try:
        o.nh, payload = scapy_open(sa, w.esp, esn)
    except IPSecIntegrityError as e:
        o.error = f"scapy: ICV does not verify ({e})"
        return o
    try:
        plain = gcm_open(sa, w.esp, esn)
    except InvalidTag:
        o.error = "scapy verified the ICV but the direct AES-GCM decoder did not"
        return o
    padlen, nh = plain[-2], plain[-1]
    if len(w.esp[16:]) % 4:
        o.error = f"ciphertext + ICV of {len(w.esp[16:])} bytes is not 4-byte aligned (RFC 4303 2.4)"
    elif padlen + 2 > len(plain) or plain[-2 - padlen:-2] != bytes(range(1, padlen + 1)):
        o.error = f"padding is not 1, 2, ..., {padlen} (RFC 4303 2.4): {plain[-2 - padlen:-2].hex()}"
    elif nh != o.nh or plain[:-2 - padlen] != payload:
        o.error = f"scapy and the direct decoder disagree (next header {o.nh} vs {nh})"
    elif nh != NH_OVERLAY:
        o.error = f"next header {nh}, expected {NH_OVERLAY} (overlay header + inner packet)"
    elif len(payload) < OVERLAY_LEN:
        o.error = f"payload of {len(payload)} bytes has no room for the overlay header"
    else:
        o.overlay, o.inner = payload[:OVERLAY_LEN], payload[OVERLAY_LEN:]
        ver_type, flags, reserved, oseq = o.overlay[0], o.overlay[3], o.overlay[4:8], o.overlay[8:]
        # docs/wire-format.md: data (type 0) has seq >= 1, flags duplicated (0x02) or sprayed
        # (0x04, reserved = the spray sequence, else 0); a probe (type 1) has flags 0 (test
        # packet) or 1 (reflected), seq and reserved 0, and a 76-byte STAMP body.
        data_ok = (ver_type == 0x10 and flags in (0, 0x02, 0x04) and oseq != bytes(8)
                   and (flags == 0x04 or reserved == bytes(4)))
        probe_ok = (ver_type == 0x11 and flags in (0, 1) and oseq == bytes(8) and reserved == bytes(4)
                    and len(o.inner) == PROBE_LEN)
        if not (data_ok or probe_ok):
            o.error = (f"overlay header {o.overlay.hex()} (+{len(o.inner)} bytes) is neither data (version 1, "
                       "type 0, seq >= 1) nor a probe (type 1, flags 0/1, seq 0, 76-byte STAMP body)")
        elif ver_type & 15 == 0 and (len(o.inner) < 20 or o.inner[0] >> 4 != 4
                                     or struct.unpack("!H", o.inner[2:4])[0] != len(o.inner)):
            o.error = f"data packet whose inner part is not exactly one IPv4 packet: {o.inner[:24].hex()}"
    return o


# --- captures and traffic ------------------------------------------------------------------

ECHO_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(65535)
    s.sendto(d, a)
"""

# Sizes cycle through every ESP padding length (the plaintext is 16 + 28 + size + 2 bytes).
UDP_SENDER = r"""
import json, socket, sys
marker, n, dst, port = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sizes = [0, 1, 2, 3, 5, 17, 64, 255, 256, 511, 1000, 1200]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(1)
echoed = 0
for i in range(n):
    body = (marker + b"-%05d-" % i + bytes(range(33, 127)) * 13)[: len(marker) + 7 + sizes[i % len(sizes)]]
    s.sendto(body, (dst, port))
    try:
        echoed += s.recvfrom(65535)[0] == body
    except socket.timeout:
        pass
print(json.dumps({"sent": n, "echoed": echoed}))
"""


@dataclass
class Run:
    """What one lab run left for the tests to check."""
    esn: bool
    workdir: Path
    marker: bytes
    status: dict = field(default_factory=dict)
    key_file_mode: int = -1
    key_file_text: str = ""
    configs: dict = field(default_factory=dict)
    keylog_text: str = ""
    sas: dict = field(default_factory=dict)
    isp_pcaps: dict = field(default_factory=dict)   # isp -> [pcap paths]
    lan_pcaps: dict = field(default_factory=dict)   # lan-a / lan-b -> pcap path
    traffic: list = field(default_factory=list)     # one line per phase: what crossed and came back
    wires: list = field(default_factory=list)       # every ISP frame, classified
    opened: list = field(default_factory=list)      # one per distinct ESP packet


def _path_states(prefix: str, script: Path, appliance: str) -> dict[str, str]:
    p = lab_cmd(prefix, "ctl", appliance, "show", "paths", "--json", script=script, check=False, timeout=20)
    if p.returncode != 0:
        return {}
    return {x.get("uplink"): x.get("state") for x in json.loads(p.stdout)}


def _wait_paths(prefix: str, script: Path, want: dict[str, str], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        now = {a: _path_states(prefix, script, a) for a in ("edge", "hub")}
        if all(now[a].get(u) == s for a in now for u, s in want.items()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"paths did not reach {want} within {timeout} s: {now}")
        time.sleep(0.2)


def _x(prefix: str, role: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", prefix + role, *cmd], capture_output=True, text=True,
                          timeout=timeout)


def _without_apps(cfg: dict, appliance: str) -> None:
    """No application checks: the edge's host stack sends nothing on its own, so every packet
    inside the tunnels is one that lan-a or lan-b sent (check_inner_packets)."""
    cfg.pop("apps", None)


def drive_lab(run: Run) -> None:
    """Brings a lab up, sends traffic over each ISP in turn under capture, reads the key log and
    takes the lab down again (always), leaving the captures in run.workdir."""
    for tool in ("tcpdump", "ping"):
        _require(tool)
    prefix = f"L{TAG}x{next(_counter)}-"
    script = lab_script_with(run.workdir / "tree", _without_apps)
    caps: list[Tcpdump] = []
    echo = None
    try:
        lab_cmd(prefix, "up", "--esn", "on" if run.esn else "off", script=script)
        run.status = json.loads(lab_cmd(prefix, "status", "--json", script=script).stdout)
        state = Path(run.status["state_dir"])
        key = state / "master.key"
        run.key_file_mode = key.stat().st_mode & 0o7777
        run.key_file_text = key.read_text()
        for a in ("edge", "hub"):
            run.configs[a] = (state / f"{a}.yaml").read_text()
        for lan in ("lan-a", "lan-b"):
            run.lan_pcaps[lan] = run.workdir / f"{lan}.pcap"
            caps.append(Tcpdump(prefix + lan, "eth0", run.lan_pcaps[lan]))
        echo = subprocess.Popen(["ip", "netns", "exec", prefix + "lan-b", sys.executable, "-c", ECHO_SERVER,
                                 str(ECHO_PORT)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True, start_new_session=True)
        assert echo.stdout.readline().strip() == "ready", "the UDP echo server in lan-b did not start"
        def carrier(isp: str, state: str) -> None:
            for side in ("e", "h"):
                subprocess.run(["ip", "-n", prefix + isp, "link", "set", f"{isp}-{side}", state],
                               check=True, capture_output=True)

        # One ISP at a time carries everything: the others lose carrier on the appliances'
        # ports (the default class balances flows over isp1 and isp2, so without this a flow
        # could take either).
        for i in ISPS[1:]:
            carrier(i, "down")
        for phase, isp in enumerate(ISPS):
            if phase:
                carrier(isp, "up")
                carrier(ISPS[phase - 1], "down")
            _wait_paths(prefix, script, {**{i: "down" for i in ISPS if i != isp}, isp: "up"})
            phase_caps = []
            for i in (isp,):  # the others have no carrier: nothing crosses them
                for side in ("e", "h"):
                    pcap = run.workdir / f"phase{phase + 1}-{i}-{side}.pcap"
                    phase_caps.append(Tcpdump(prefix + i, f"{i}-{side}", pcap))
                    run.isp_pcaps.setdefault(i, []).append(pcap)
            caps += phase_caps
            ping = _x(prefix, "lan-a", "ping", "-n", "-c", str(PHASE_PINGS), "-i", "0.05", "-W", "2", "-s", "120",
                      "-p", run.marker.hex(), HOST_B)
            m = re.search(r"(\d+) packets transmitted, (\d+) received", ping.stdout)
            udp = _x(prefix, "lan-a", sys.executable, "-c", UDP_SENDER, run.marker.decode(), str(PHASE_DATAGRAMS),
                     HOST_B, str(ECHO_PORT))
            try:
                echoed = json.loads(udp.stdout)
            except json.JSONDecodeError:
                echoed = {"error": udp.stdout + udp.stderr}
            run.traffic.append({"isp": isp, "ping": m.groups() if m else ping.stdout + ping.stderr,
                                "udp": echoed})
            time.sleep(0.5)  # the last replies are on the wire
            for c in phase_caps:
                c.stop()
        for c in caps[:2]:
            c.stop()
        run.keylog_text = Path(run.status["keylog"]).read_text()
        (run.workdir / "keylog.txt").write_text(run.keylog_text)
    finally:
        for c in caps:
            c.kill()
        if echo is not None and echo.poll() is None:
            os.killpg(echo.pid, signal.SIGKILL)
            echo.wait(timeout=10)
        lab_cmd(prefix, "down", script=script, check=False)


def analyse(run: Run) -> None:
    """Classifies every ISP frame and opens every distinct ESP packet."""
    run.sas = parse_keylog(run.keylog_text)
    seen: dict[bytes, Opened] = {}
    for isp, pcaps in run.isp_pcaps.items():
        for pcap in pcaps:
            for n, f in enumerate(read_frames(pcap), start=1):
                w = classify(pcap.name, n, f)
                run.wires.append(w)
                if w.kind == "esp" and w.esp not in seen:
                    seen[w.esp] = check_esp(w, run.sas, run.esn)
    run.opened = list(seen.values())


def _lab_run(tmp_path_factory, esn: bool):
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, hugepages)", pytrace=False)
    workdir = tmp_path_factory.mktemp("esp-esn-on" if esn else "esp-esn-off")
    run = Run(esn=esn, workdir=workdir, marker=b"SDWANMRK" + secrets.token_hex(4).encode())
    try:
        drive_lab(run)
        analyse(run)
        yield run
    finally:
        keep = os.environ.get("SDWAN_ESP_KEEP")
        if keep:
            shutil.copytree(workdir, Path(keep) / workdir.name, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def esn_on(tmp_path_factory):
    yield from _lab_run(tmp_path_factory, esn=True)


@pytest.fixture(scope="module")
def esn_off(tmp_path_factory):
    yield from _lab_run(tmp_path_factory, esn=False)


def _listing(items, limit: int = 15) -> str:
    items = list(items)
    more = f"\n... and {len(items) - limit} more" if len(items) > limit else ""
    return "\n".join(str(i) for i in items[:limit]) + more


# --- checks shared by both runs -------------------------------------------------------------

def check_status_and_key(run: Run) -> None:
    st = run.status
    assert st["keylog"] and Path(st["keylog"]).parent == Path(st["state_dir"]), st
    assert st["esn"] is run.esn, f"status says esn {st['esn']!r}, the lab was brought up with {run.esn}"
    assert run.key_file_mode == 0o600, f"master.key has mode {run.key_file_mode:o}"
    assert re.fullmatch(r"[0-9a-f]{64}\n", run.key_file_text), "master.key is not one line of 64 hex digits"
    for a, text in run.configs.items():
        assert f"key_file: {st['state_dir']}/master.key" in text, f"{a} config has no key_file:\n{text}"
        assert f"esn: {'true' if run.esn else 'false'}" in text and f"keylog: {st['keylog']}" in text, text
        assert "\napps:" not in text, f"{a} config still has application checks:\n{text}"


def check_traffic(run: Run) -> None:
    for t in run.traffic:
        assert t["ping"] == (str(PHASE_PINGS), str(PHASE_PINGS)), f"pings over {t['isp']}: {t['ping']}"
        assert t["udp"] == {"sent": PHASE_DATAGRAMS, "echoed": PHASE_DATAGRAMS}, f"UDP over {t['isp']}: {t['udp']}"


def check_only_esp(run: Run) -> None:
    clear = [w for w in run.wires if w.kind == "cleartext"]
    assert not clear, "frames that are not ESP between the appliances:\n" + _listing(
        f"{w.capture} #{w.number}: {w.why}" for w in clear)
    for isp in ISPS:
        n = sum(1 for w in run.wires if w.kind == "esp" and w.capture.split("-", 1)[1].startswith(isp))
        assert n, f"no ESP packet at all on {isp}"
    # Each outer address pair is one path: the ESP packets there belong to that path's SAs.
    for o in run.opened:
        i = int(o.wire.src.split(".")[1])
        assert {o.wire.src, o.wire.dst} == {f"10.{i}.0.2", f"10.{i}.1.2"}, f"{o.wire}: not between the appliances"


def check_every_packet_opens(run: Run) -> None:
    assert run.opened, "no ESP packet was captured"
    bad = [o for o in run.opened if o.error]
    assert not bad, f"{len(bad)} of {len(run.opened)} ESP packets do not check out:\n" + _listing(
        f"{o.wire.capture} #{o.wire.number} SPI 0x{o.spi:08x} seq {o.seq}: {o.error}" for o in bad)
    used = {(o.wire.src, o.wire.dst, o.spi) for o in run.opened}
    assert used <= set(run.sas), "SPIs without key log lines"


def check_wrong_esn_fails(run: Run) -> None:
    """With ESN the ICV covers the high 32 bits and without it not: opening packets under the
    other setting must fail, or the esp.esn key did nothing."""
    for o in run.opened:
        sa = run.sas[(o.wire.src, o.wire.dst, o.spi)]
        with pytest.raises(IPSecIntegrityError):
            scapy_open(sa, o.wire.esp, not run.esn)


def check_no_reuse(run: Run) -> None:
    by_sa = defaultdict(list)
    for o in run.opened:
        by_sa[(o.wire.src, o.wire.dst, o.spi)].append(o)
    for k, os_ in by_sa.items():
        ivs = [o.iv for o in os_]
        seqs = [o.seq for o in os_]
        assert len(set(ivs)) == len(ivs), f"SA {k}: an IV used twice (AES-GCM nonce reuse)"
        assert len(set(seqs)) == len(seqs), f"SA {k}: a sequence number used twice"
        assert 0 < min(seqs) and max(seqs) < 2**31, f"SA {k}: sequence numbers {min(seqs)}..{max(seqs)}"
    # On one link the packets of one SA pass in the order they were sent.
    last: dict[tuple, int] = {}
    for w in run.wires:
        if w.kind == "esp":
            spi, seq = struct.unpack("!II", w.esp[:8])
            k = (w.capture, spi)
            assert seq > last.get(k, 0), f"{w.capture} #{w.number}: SPI 0x{spi:08x} seq {seq} after {last.get(k)}"
            last[k] = seq


def check_inner_packets(run: Run) -> None:
    decrypted: dict[bytes, set[str]] = defaultdict(set)
    for o in run.opened:
        if o.inner and o.overlay[0] & 15 == 0:
            decrypted[o.inner].add(o.wire.capture.split("-")[1])
    sent = {("lan-a", HOST_A, HOST_B): lan_sent(run.lan_pcaps["lan-a"], HOST_A, HOST_B),
            ("lan-b", HOST_B, HOST_A): lan_sent(run.lan_pcaps["lan-b"], HOST_B, HOST_A)}
    want = PHASE_PINGS + PHASE_DATAGRAMS
    expected = set()
    for (lan, src, dst), pkts in sent.items():
        assert len(pkts) >= len(ISPS) * want, f"{lan} sent only {len(pkts)} packets to {dst}"
        missing = [p for p in pkts if expected_inner(p) not in decrypted]
        assert not missing, (f"{len(missing)} of {len(pkts)} packets {lan} sent are in no capture, decrypted "
                             f"(TTL one lower): first {missing[0][:40].hex()}")
        isps = set().union(*(decrypted[expected_inner(p)] for p in pkts))
        assert isps == set(ISPS), f"{lan}'s packets crossed only {sorted(isps)}"
        expected |= {expected_inner(p) for p in pkts}
    strange = [i for i in decrypted if i not in expected]
    assert not strange, "decrypted packets no LAN host sent:\n" + _listing(i[:40].hex() for i in strange)


def check_marker_absent(run: Run) -> None:
    assert run.marker in run.lan_pcaps["lan-a"].read_bytes(), "sanity: the marker is in lan-a's own capture"
    for pcaps in run.isp_pcaps.values():
        for pcap in pcaps:
            assert run.marker not in pcap.read_bytes(), f"the payload marker is in the clear in {pcap.name}"


def tamper(esp: bytes, offset: int) -> bytes:
    b = bytearray(esp)
    b[offset] ^= 0x01
    return bytes(b)


# --- ESN on (the default lab) ---------------------------------------------------------------

def test_esn_lab_status_names_the_key_log_and_the_key_is_private(esn_on):
    check_status_and_key(esn_on)
    assert len(esn_on.sas) >= 2 * len(ISPS), f"expected an SA per ISP and direction in the key log:\n{esn_on.keylog_text}"


def test_esn_lab_traffic_crossed_every_isp_and_came_back(esn_on):
    check_traffic(esn_on)


def test_esn_lab_only_esp_between_the_appliances(esn_on):
    check_only_esp(esn_on)


def test_esn_lab_every_esp_packet_authenticates_and_decrypts(esn_on):
    check_every_packet_opens(esn_on)


def test_esn_lab_icv_covers_the_high_sequence_bits(esn_on):
    check_wrong_esn_fails(esn_on)


def test_esn_lab_no_iv_or_sequence_number_twice(esn_on):
    check_no_reuse(esn_on)


def test_esn_lab_inner_packets_are_what_the_lan_hosts_sent(esn_on):
    check_inner_packets(esn_on)


def test_esn_lab_flipped_bit_fails_the_icv(esn_on):
    o = next(o for o in esn_on.opened if not o.error and o.inner)
    sa = esn_on.sas[(o.wire.src, o.wire.dst, o.spi)]
    scapy_open(sa, o.wire.esp, True)
    for what, offset in (("ciphertext", 16 + 5), ("ICV", len(o.wire.esp) - 1), ("sequence number", 7),
                         ("IV", 8)):
        try:
            scapy_open(sa, tamper(o.wire.esp, offset), True)
        except IPSecIntegrityError:
            continue
        pytest.fail(f"a flipped bit in the {what} of {o.wire.capture} #{o.wire.number} still verified")


def test_esn_lab_marker_never_on_an_isp_link(esn_on):
    check_marker_absent(esn_on)


# --- ESN off, checked by tshark as well ------------------------------------------------------

def tshark_icv(pcap: Path, sas: dict, home: Path) -> dict[int, tuple[str, str, str]]:
    """frame number -> (esp.spi, esp.icv_good, esp.icv_bad) for every UDP 4500 frame, the SAs
    given on the command line and nothing read from a user's Wireshark profile."""
    exe = _require("tshark")
    home.mkdir(exist_ok=True)
    cmd = [exe, "-n", "-r", str(pcap), "-o", "esp.enable_encryption_decode:TRUE",
           "-o", "esp.enable_authentication_check:TRUE"]
    for line in sorted({sa.line for sa in sas.values()}):
        cmd += ["-o", f"uat:esp_sa:{line}"]
    cmd += ["-Y", f"udp.port == {ESP_PORT}", "-T", "fields", "-E", "separator=,",
            "-e", "frame.number", "-e", "esp.spi", "-e", "esp.icv_good", "-e", "esp.icv_bad"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, HOME=str(home), XDG_CONFIG_HOME=str(home)))
    assert p.returncode == 0, f"{' '.join(cmd)} -> {p.returncode}\n{p.stderr}"
    out = {}
    for line in p.stdout.splitlines():
        n, spi, good, badf = line.split(",")
        out[int(n)] = (spi, good, badf)
    return out


def test_esn_off_lab_status_and_decoding(esn_off):
    check_status_and_key(esn_off)
    check_traffic(esn_off)
    check_only_esp(esn_off)
    check_every_packet_opens(esn_off)
    check_wrong_esn_fails(esn_off)
    check_no_reuse(esn_off)
    check_inner_packets(esn_off)
    check_marker_absent(esn_off)


def test_esn_off_tshark_verifies_every_icv(esn_off):
    total = 0
    for pcaps in esn_off.isp_pcaps.values():
        for pcap in pcaps:
            got = tshark_icv(pcap, esn_off.sas, esn_off.workdir / "tshark-home")
            esp = [w.number for w in esn_off.wires if w.capture == pcap.name and w.kind == "esp"]
            assert sorted(got) == esp, f"{pcap.name}: tshark's UDP 4500 frames differ from the ESP frames found"
            bad = {n: v for n, v in got.items() if v[1] != "1"}
            assert not bad, f"{pcap.name}: frames whose ICV tshark does not verify (spi, good, bad):\n" + _listing(
                f"#{n}: {v}" for n, v in bad.items())
            total += len(got)
    assert total, "tshark saw no ESP frame"


def test_esn_off_tshark_flags_a_tampered_frame(esn_off):
    pcap = next(p for ps in esn_off.isp_pcaps.values() for p in ps
                if any(w.capture == p.name and w.kind == "esp" for w in esn_off.wires))
    frames = read_frames(pcap)
    n = next(w.number for w in esn_off.wires if w.capture == pcap.name and w.kind == "esp")
    f = bytearray(frames[n - 1])
    f[14 + 20 + 8 + 16 + 3] ^= 0x80  # a ciphertext byte (Ethernet, IPv4, UDP, SPI/seq/IV)
    frames[n - 1] = bytes(f)
    bad_pcap = esn_off.workdir / "tampered.pcap"
    wrpcap(str(bad_pcap), [Ether(x) for x in frames])
    got = tshark_icv(bad_pcap, esn_off.sas, esn_off.workdir / "tshark-home")
    assert got[n][1] != "1" and got[n][2] == "1", f"tampered frame #{n}: (spi, icv_good, icv_bad) = {got[n]}"
    others = {k: v for k, v in got.items() if k != n and v[1] != "1"}
    assert not others, f"untouched frames that no longer verify: {others}"


# --- the checker itself, without a lab --------------------------------------------------------

def test_checker_on_packets_scapy_sealed(tmp_path):
    """The decoders accept what scapy seals with a key log line's key, in both ESN modes, and
    refuse a flipped bit, a wrong next header and the wrong ESN mode; tshark agrees for ESN off."""
    lines = []
    for i, (src, dst) in enumerate((("10.1.0.2", "10.1.1.2"), ("10.1.1.2", "10.1.0.2"))):
        spi = 0x5D000010 | i
        key = secrets.token_bytes(36)
        lines.append(f'"IPv4","{src}","{dst}","0x{spi:08x}","{GCM_ALGO}","0x{key.hex()}","NULL",""')
    sas = parse_keylog("# comment\n\n" + "\n".join(lines + lines[:1]) + "\n")
    assert len(sas) == 2
    with pytest.raises(AssertionError):
        parse_keylog(lines[0].replace("0x5d000010", "5d000010"))
    inner = raw(IP(src=HOST_A, dst=HOST_B, ttl=63) / UDP(sport=1, dport=ECHO_PORT) / Raw(b"x" * 7))
    overlay = bytes([0x10, 0, 0, 0]) + bytes(4) + struct.pack("!Q", 1)
    for esn in (True, False):
        frames = [seal(sa, overlay + inner, seq, esn) for sa in sas.values() for seq in (1, 2, 3)]
        wires = [classify("t", n, f) for n, f in enumerate(frames, start=1)]
        assert all(w.kind == "esp" for w in wires), [w.why for w in wires]
        opened = [check_esp(w, sas, esn) for w in wires]
        assert all(not o.error and o.inner == inner for o in opened), [o.error for o in opened]
        wrong = [check_esp(w, sas, not esn) for w in wires]
        assert all("ICV does not verify" in o.error for o in wrong)
        t = check_esp(Wire("t", 1, "esp", src=wires[0].src, dst=wires[0].dst, esp=tamper(wires[0].esp, 20)), sas, esn)
        assert "ICV does not verify" in t.error
        other_nh = classify("t", 1, seal(next(iter(sas.values())), inner, 9, esn, nh=4))
        assert "next header 4" in check_esp(other_nh, sas, esn).error
        if not esn:
            pcap = tmp_path / "sealed.pcap"
            frames.append(tamper(frames[0], 14 + 20 + 8 + 16 + 4))  # a ciphertext byte
            wrpcap(str(pcap), [Ether(f) for f in frames])
            got = tshark_icv(pcap, sas, tmp_path / "home")
            assert [v[1] for _, v in sorted(got.items())] == ["1"] * 6 + ["0"], got
    cleartext_4500 = classify("t", 1, raw(Ether() / IP(src="10.1.0.2", dst="10.1.1.2")
                                          / UDP(sport=4500, dport=4500) / Raw(b"SDWANMRK" * 8)))
    assert "no key log line" in check_esp(cleartext_4500, sas, True).error
    assert classify("t", 1, raw(Ether() / IP(src="10.1.0.2", dst="10.1.1.2") / UDP(sport=4501, dport=4500)
                                / Raw(b"x" * 40))).kind == "cleartext"
