#!/usr/bin/python3
"""Writes the seed corpora of tests/fuzz/corpus/ (run it again after changing an input format).

    make_corpus.py [CORPUS_DIR]      default: corpus/ next to this file

A handful of small real inputs per target: the frames the tests build (overlay, ESP in UDP
sealed with fuzz_inbound's fixed keys, ARP, ICMP echo, TCP SYN, VLAN, IPv6 extensions),
ESP packet descriptions in fuzz_inbound's format, and the lab's configs with a key file, an
epoch file and port specs. Deterministic: the same files every time.
"""

import os
import shutil
import struct
import sys

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# fuzz_inbound.cpp's SAs.
SPI_PLAIN, SPI_ESN = 0x5D000052, 0x5D010053
KEY_PLAIN = bytes.fromhex("feffe9928665731c6d6a8f9467308308" * 2)
KEY_ESN = bytes.fromhex("0123456789abcdef0123456789abcdef1032547698badcfe1032547698badcfe")
SALT_PLAIN, SALT_ESN = bytes.fromhex("cafebabe"), bytes.fromhex("deadbeef")


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def eth(payload, ethertype=0x0800, tags=()):
    head = bytes.fromhex("020000000002020000000001")
    for tpid, vid in tags:
        head += struct.pack("!HH", tpid, vid)
    return head + struct.pack("!H", ethertype) + payload


def ipv4(payload, proto=17, src="10.1.1.2", dst="10.1.0.2", frag=0x4000, options=b""):
    ihl = 5 + len(options) // 4
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, 20 + len(options) + len(payload), 0x1234, frag, 64, proto, 0,
                    bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))) + options
    h = h[:10] + struct.pack("!H", csum(h)) + h[12:]
    return h + payload


def udp(payload, sport=4500, dport=4500):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp_echo(data=bytes(range(32))):
    h = struct.pack("!BBHHH", 8, 0, 0, 0x77, 1) + data
    return h[:2] + struct.pack("!H", csum(h)) + h[4:]


def tcp_syn(src, dst, mss=1460):
    h = struct.pack("!HHIIBBHHH", 40000, 443, 1000, 0, 6 << 4, 0x02, 65535, 0, 0) + struct.pack("!BBH", 2, 4, mss)
    ph = bytes(map(int, src.split("."))) + bytes(map(int, dst.split("."))) + struct.pack("!BBH", 0, 6, len(h))
    return h[:16] + struct.pack("!H", csum(ph + h)) + h[18:]


def arp_request():
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, bytes.fromhex("020000000001"), bytes([10, 1, 0, 2]),
                       bytes(6), bytes([10, 1, 0, 1]))
    return b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x08\x06" + body + bytes(18)


def ipv6(payload, nh, src=b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01", dst=b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02"):
    return struct.pack("!IHBB", 6 << 28, len(payload), nh, 64) + src + dst + payload


def overlay(inner, seq=1):
    return struct.pack("!BBBBIQ", 0x10, 0, 0, 0, 0, seq) + inner


def esp_frame(spi, seq, plain, esn_high=None, nh=4):
    """Tunnel-mode ESP in UDP, sealed as esp_encrypt_burst does (pad 1, 2, 3..., IV = seq)."""
    key, salt = (KEY_ESN, SALT_ESN) if spi == SPI_ESN else (KEY_PLAIN, SALT_PLAIN)
    pad = (-(len(plain) + 2)) % 4
    text = plain + bytes(range(1, pad + 1)) + bytes([pad, nh])
    hdr = struct.pack("!II", spi, seq & 0xFFFFFFFF)
    iv = struct.pack("!Q", seq)
    aad = hdr if esn_high is None else struct.pack("!III", spi, esn_high, seq & 0xFFFFFFFF)
    sealed = AESGCM(key).encrypt(salt + iv, text, aad)
    return eth(ipv4(udp(hdr + iv + sealed)))


def spec(which, seq_lo, plain, trailer_nh=None, seq_hi=None, iv=b"\0" * 7 + b"\1", eth_pad=False, spi=None):
    """One ESP packet description in fuzz_inbound's read_spec format."""
    flags = which
    if seq_hi is not None:
        flags |= 0x08
    if eth_pad:
        flags |= 0x04
    if trailer_nh is not None:
        flags |= 0x10 | ({4: 0, 41: 1, 253: 2}.get(trailer_nh, 3) << 5)
    out = bytes([flags]) + struct.pack("!I", seq_lo)
    if seq_hi is not None:
        out += struct.pack("!I", seq_hi)
    if which >= 2:
        out += struct.pack("!I", spi)
    out += iv + struct.pack("!H", len(plain)) + plain
    if trailer_nh is not None and trailer_nh not in (4, 41, 253):
        out += bytes([trailer_nh])
    return out


def mode(kind, engine=0, split=False):
    """fuzz_inbound's first byte: kind = byte % 3, engine = (byte >> 2 & 3) % 3, bit 7 splits."""
    for b in range(256):
        if b % 3 == kind and (b >> 2 & 3) % 3 == engine and bool(b & 0x80) == split:
            return bytes([b])
    raise ValueError((kind, engine, split))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    inner = ipv4(icmp_echo(), proto=1, src="192.168.10.2", dst="192.168.20.2", frag=0)
    seeds = {
        "parse": {
            "overlay_udp4": eth(ipv4(udp(overlay(inner)))),
            "icmp_echo": eth(ipv4(icmp_echo(), proto=1, frag=0)),
            "tcp_syn_mss": eth(ipv4(tcp_syn("192.168.10.2", "192.168.20.2"), proto=6, src="192.168.10.2",
                                    dst="192.168.20.2")),
            "arp_request": arp_request(),
            "qinq_udp6": eth(ipv6(udp(b"hello", 5000, 53), 17), 0x86DD, tags=((0x88A8, 100), (0x8100, 200))),
            "ipv6_ext_frag_tcp": eth(ipv6(bytes([44, 0]) + bytes(6) + bytes([6, 0, 0, 0, 0, 0, 0, 7]) +
                                          tcp_syn("10.0.0.1", "10.0.0.2")[:20], 0), 0x86DD),
            "ipv4_options_fragment": eth(ipv4(udp(b"x" * 24, 1000, 2000), options=b"\x94\x04\x00\x00",
                                              frag=0x2000)),
        },
        "inbound": {
            "raw_overlay": mode(0) + eth(ipv4(udp(overlay(inner)))),
            "raw_esp_plain": mode(0) + esp_frame(SPI_PLAIN, 1, inner),
            "raw_esp_esn": mode(0, engine=1) + esp_frame(SPI_ESN, 7, inner, esn_high=0),
            "raw_esp_overlay_split": mode(0, engine=2, split=True) +
                                     esp_frame(SPI_PLAIN, 2, overlay(inner), nh=253),
            "raw_natt_keepalive": mode(0) + eth(ipv4(udp(b"\xff"))),
            "single_plain": mode(1) + spec(0, 1, inner, trailer_nh=4),
            "single_esn_padded": mode(1, engine=1) + spec(1, 5, inner[:33], trailer_nh=41, seq_hi=0, eth_pad=True),
            "single_bad_trailer": mode(1) + spec(0, 3, inner + b"\x05\x04"),
            "single_edited_ttl": mode(1) + spec(0, 4, inner, trailer_nh=4) + b"\x01" + b"\x00\x16\x01",
            "burst_replay": mode(2) + bytes([5]) + b"".join(
                spec(0, s, inner[:20 + s], trailer_nh=4) for s in (1, 3, 2, 3, 1)),
            "burst_two_chunks": mode(2, engine=2) + bytes([39]) + b"".join(
                spec(i % 2, 1 + (i * 37) % 1500, bytes([0x45]) + bytes(i % 5), trailer_nh=(4, 41, 253)[i % 3],
                     seq_hi=0 if i % 2 else None) for i in range(40)),
            "burst_unknown_spi": mode(2, engine=1) + bytes([2]) + spec(2, 9, inner, trailer_nh=4, spi=0x5D020054) +
                                 spec(1, 9, inner, trailer_nh=4, seq_hi=1),
        },
        "config": {},
    }
    for name in ("edge.yaml", "hub.yaml"):
        with open(os.path.join(ROOT, "tests", "configs", name), "rb") as f:
            seeds["config"][name] = f.read()
    seeds["config"].update({
        "minimal.yaml": (b"name: branch1\nrole: edge\nlan:\n  port: af_packet:lan0\n  address: 192.168.10.1/24\n"
                         b"uplinks:\n  - name: isp1\n    port: af_packet:wan1\n    address: 10.1.0.2/24\n"
                         b"    next_hop: 10.1.0.1\n    cost: metered\n    bandwidth: 100mbit\n"
                         b"peers:\n  - name: hub\n    endpoints:\n      - address: 10.1.1.2\n        port: 4501\n"
                         b"        uplinks: [isp1]\n    prefixes: [192.168.20.0/24]\n"),
        "master.key": b"# sdwan master key\n" + b"00112233445566778899aabbccddeeff" * 2 + b"\n",
        "epochs": b"# LOCAL_IP:PORT REMOTE_IP:PORT EPOCH\n10.1.0.2:4500 10.1.1.2:4500 3\n10.2.0.2:4500 10.2.1.2:4500 0\n",
        "port_pci": b"pci:0000:03:00.0",
        "port_af_xdp": b"af_xdp:eth1",
        "port_tap": b"tap:sdwan0",
    })
    for target, files in seeds.items():
        d = os.path.join(out, target)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        for name, data in sorted(files.items()):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
    print(f"wrote {sum(len(f) for f in seeds.values())} seeds under {out}")


if __name__ == "__main__":
    main()
