#!/usr/bin/python3
"""Sequence-numbered UDP streams and plain TCP flows for the lab tests, run inside a lab
namespace (`ip netns exec NS /usr/bin/python3 tests/lab/udpstream.py ...`).

    send --dst IP --port P [--port P2 ...] --rate PPS --seconds S [--size B] [--sport-base N]
        One stream per destination port, each from source port sport-base + i, all paced
        together: packet k of every stream leaves at start + k / rate (a late sender catches
        up at once rather than lowering the rate). Payload: magic, stream port, kind,
        sequence number (from 1), the sender's CLOCK_REALTIME in ns, padding to --size.
        After the last packet, an end marker carrying the count is sent 5 times, 10 ms apart;
        SIGTERM or SIGINT ends the streams early the same way, with the count so far.
        Prints one JSON line: per stream packets sent, and the sender's worst lateness.
    recv --port P [--port ...] --out FILE [--timeout S] [--trace]
        Records every datagram's sequence number, send time and kernel receive time
        (SO_TIMESTAMPNS, CLOCK_REALTIME: the same clock as the sender's, one host). Prints
        "ready" once bound; ends when every stream's end marker came, at --timeout, or on
        SIGTERM/SIGINT, and writes FILE (JSON, see report()). --trace adds every arrival.
    tcpsink --port P
        Accepts TCP connections and discards what they send, until killed.
    tcpflows --dst IP --port P --flows N --sport-base B --seconds S [--rate-bps R] [--rst]
        N TCP connections from source ports B .. B + N - 1 (so their 5-tuples, and so their
        hash, are the same on every run), each sending R bytes/s in 1 kB writes for S s;
        SIGTERM or SIGINT ends them early, the same way.
        --rst closes them with a reset (SO_LINGER 0), leaving no TIME_WAIT on the ports.
        Prints one JSON line: connections made, bytes sent.

Only the Python standard library: the lab runs Debian's /usr/bin/python3.
"""

from __future__ import annotations

import argparse
import json
import selectors
import signal
import socket
import struct
import sys
import time

MAGIC = b"SDWS"
HDR = struct.Struct("!4sHHQQ")  # magic, stream (destination port), kind, seq, send ns
KIND_DATA, KIND_END = 0, 1
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def now_ns() -> int:
    return time.time_ns()


# --- send ---------------------------------------------------------------------------------

def cmd_send(a: argparse.Namespace) -> int:
    socks = []
    for i, port in enumerate(a.port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", a.sport_base + i if a.sport_base else 0))
        s.connect((a.dst, port))
        socks.append((port, s))
    size = max(a.size, HDR.size)
    pad = bytes(size - HDR.size)
    n = int(round(a.rate * a.seconds))
    period = 1e9 / a.rate
    sent = {p: 0 for p in a.port}
    errors = 0
    worst_late = 0.0
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    start = time.monotonic_ns() + 10_000_000
    for k in range(1, n + 1):
        if stop:
            n = k - 1
            break
        due = start + int((k - 1) * period)
        wait = due - time.monotonic_ns()
        if wait > 0:
            time.sleep(wait / 1e9)
        else:
            worst_late = max(worst_late, -wait / 1e6)
        t = now_ns()
        for port, s in socks:
            try:
                s.send(HDR.pack(MAGIC, port, KIND_DATA, k, t) + pad)
                sent[port] += 1
            except OSError:  # e.g. ECONNREFUSED from an ICMP error: keep the pace
                errors += 1
    for _ in range(5):
        time.sleep(0.01)
        for port, s in socks:
            try:
                # The count the stream was meant to have: a packet the sender could not send
                # is lost too, from the receiver's point of view.
                s.send(HDR.pack(MAGIC, port, KIND_END, n, now_ns()))
            except OSError:
                pass
    print(json.dumps({"sent": {str(p): n for p in a.port}, "send_errors": errors, "stopped_early": stop,
                      "worst_late_ms": round(worst_late, 3), "rate": a.rate}), flush=True)
    return 0


# --- recv ---------------------------------------------------------------------------------

class Stream:
    def __init__(self, port: int) -> None:
        self.port = port
        self.seqs: list[int] = []
        self.rx: list[int] = []
        self.tx: list[int] = []
        self.count: int | None = None

    def report(self, trace: bool) -> dict:
        seen: set[int] = set()
        dups = reordered = 0
        top = 0
        order: list[tuple[int, int, int]] = []  # unique arrivals: (rx, seq, tx)
        for seq, rx, tx in zip(self.seqs, self.rx, self.tx):
            if seq in seen:
                dups += 1
                continue
            seen.add(seq)
            if seq < top:
                reordered += 1
            top = max(top, seq)
            order.append((rx, seq, tx))
        order.sort()
        gaps = []
        max_gap = (0, None, None)
        for (r0, s0, _), (r1, s1, _) in zip(order, order[1:]):
            g = r1 - r0
            if g > max_gap[0]:
                max_gap = (g, s0, s1)
            if g > 20_000_000:
                gaps.append({"after_seq": s0, "next_seq": s1, "at_ns": r0, "ms": round(g / 1e6, 3)})
        owd = sorted((rx - tx) / 1e6 for rx, _, tx in order)
        expected = self.count if self.count is not None else (max(seen) if seen else 0)
        out = {
            "port": self.port,
            "sent": self.count,
            "received": len(self.seqs),
            "unique": len(seen),
            "duplicates": dups,
            "lost": expected - len([s for s in seen if s <= expected]),
            "reordered": reordered,
            "max_gap_ms": round(max_gap[0] / 1e6, 3),
            "max_gap_after_seq": max_gap[1],
            "max_gap_next_seq": max_gap[2],
            "gaps_over_20ms": gaps,
            "first_rx_ns": order[0][0] if order else None,
            "last_rx_ns": order[-1][0] if order else None,
            "owd_ms": {"min": owd[0], "median": owd[len(owd) // 2], "max": owd[-1]} if owd else None,
        }
        if trace:
            # Every arrival, duplicates included, in arrival order: [seq, rx ns, tx ns].
            out["trace"] = [[s, r, t] for s, r, t in sorted(zip(self.seqs, self.rx, self.tx), key=lambda x: x[1])]
        return out


def cmd_recv(a: argparse.Namespace) -> int:
    sel = selectors.DefaultSelector()
    streams: dict[int, Stream] = {}
    for port in a.port:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        s.bind(("0.0.0.0", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, port)
        streams[port] = Stream(port)
    stop = False

    def on_signal(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("ready", flush=True)
    deadline = time.monotonic() + a.timeout
    bad = 0
    while not stop and time.monotonic() < deadline:
        if all(st.count is not None for st in streams.values()):
            break
        for key, _ in sel.select(timeout=0.1):
            st = streams[key.data]
            while True:
                try:
                    data, anc, _, _ = key.fileobj.recvmsg(2048, 64)
                except BlockingIOError:
                    break
                rx = now_ns()
                for lvl, typ, val in anc:
                    if lvl == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS and len(val) >= 16:
                        sec, nsec = struct.unpack("qq", val[:16])
                        rx = sec * 1_000_000_000 + nsec
                if len(data) < HDR.size:
                    bad += 1
                    continue
                magic, port, kind, seq, tx = HDR.unpack_from(data)
                if magic != MAGIC or port != st.port:
                    bad += 1
                    continue
                if kind == KIND_END:
                    st.count = seq
                    continue
                st.seqs.append(seq)
                st.rx.append(rx)
                st.tx.append(tx)
    rep = {"streams": {str(p): st.report(a.trace) for p, st in streams.items()}, "bad": bad,
           "complete": all(st.count is not None for st in streams.values())}
    with open(a.out, "w") as f:
        json.dump(rep, f)
    return 0


# --- tcp ----------------------------------------------------------------------------------

def cmd_tcpsink(a: argparse.Namespace) -> int:
    sel = selectors.DefaultSelector()
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", a.port))
    ls.listen(512)
    ls.setblocking(False)
    sel.register(ls, selectors.EVENT_READ, None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print("ready", flush=True)
    while True:
        for key, _ in sel.select(timeout=1):
            if key.data is None:
                try:
                    c, _ = ls.accept()
                except BlockingIOError:
                    continue
                c.setblocking(False)
                sel.register(c, selectors.EVENT_READ, "c")
                continue
            try:
                d = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                d = b""
            if d == b"":
                sel.unregister(key.fileobj)
                key.fileobj.close()


def cmd_tcpflows(a: argparse.Namespace) -> int:
    conns = []
    for i in range(a.flows):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", a.sport_base + i))
        s.settimeout(5)
        s.connect((a.dst, a.port))
        s.setblocking(False)
        conns.append(s)
    chunk = bytes(1000)
    sent = 0
    every = max(0.005, 1000 / max(1, a.rate_bps))  # one 1 kB write per connection this often
    start = time.monotonic()
    k = 0
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    while not stop and time.monotonic() - start < a.seconds:
        for s in conns:
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                pass
        k += 1
        wait = start + k * every - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    for s in conns:
        if a.rst:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    print(json.dumps({"flows": len(conns), "bytes": sent}), flush=True)
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("send")
    s.add_argument("--dst", required=True)
    s.add_argument("--port", type=int, action="append", required=True)
    s.add_argument("--rate", type=float, default=1000)
    s.add_argument("--seconds", type=float, required=True)
    s.add_argument("--size", type=int, default=200)
    s.add_argument("--sport-base", type=int, default=0)
    r = sub.add_parser("recv")
    r.add_argument("--port", type=int, action="append", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--timeout", type=float, default=120)
    r.add_argument("--trace", action="store_true")
    t = sub.add_parser("tcpsink")
    t.add_argument("--port", type=int, required=True)
    f = sub.add_parser("tcpflows")
    f.add_argument("--dst", required=True)
    f.add_argument("--port", type=int, required=True)
    f.add_argument("--flows", type=int, required=True)
    f.add_argument("--sport-base", type=int, required=True)
    f.add_argument("--seconds", type=float, required=True)
    f.add_argument("--rate-bps", type=int, default=20000)
    f.add_argument("--rst", action="store_true")
    a = ap.parse_args()
    return {"send": cmd_send, "recv": cmd_recv, "tcpsink": cmd_tcpsink, "tcpflows": cmd_tcpflows}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
