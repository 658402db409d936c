#!/usr/bin/python3
"""Measures how precisely sdwan-wanem applies a delay, from packets, on this machine.

    sudo SDWAN_BUILD=build /usr/bin/python3 tests/lab/wanem/measure_precision.py \
        [--delay-ms 40] [--pps 1000] [--seconds 10] [--spinners 2] [--realtime 0]

Two namespaces with kernel hosts are joined through a third running sdwan-wanem (as in
tests/lab/test_wanem.py). Host A sends UDP datagrams stamped with CLOCK_REALTIME just before
sendto(); host B reads the kernel's receive timestamp (SO_TIMESTAMPNS). All namespaces share
the clock, so receive - send - delay is the excess one-way delay: host stacks, the veths and
the emulator's wake-ups together. The same run with delay 0 gives the path without any
scheduled release. The emulator's own record (status: lateness_us) is printed beside it.

--spinners N runs N busy loops (nice 0) for the duration, standing in for DPDK workers that
busy-poll the machine's cores; 0 measures an otherwise idle machine. Prints one line per run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import netns  # noqa: E402

SENDER = r"""
import socket, struct, sys, time
dst, pps, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = int(pps * seconds); gap = 1e9 / pps
t0 = time.monotonic_ns()
for i in range(n):
    target = t0 + int(i * gap)
    while True:
        d = target - time.monotonic_ns()
        if d <= 0: break
        time.sleep(d / 1e9 if d > 200_000 else 0)
    s.sendto(struct.pack("!QQ", i, time.clock_gettime_ns(time.CLOCK_REALTIME)) + bytes(48),
             (dst, 9999))
"""

RECEIVER = r"""
import socket, struct, sys, time
bind, count, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
SO_TIMESTAMPNS = 35  # Linux; Debian's python does not name it
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.bind((bind, 9999)); s.settimeout(2.0)
print("ready", flush=True)
out = []
end = time.monotonic() + limit
while len(out) < count and time.monotonic() < end:
    try:
        data, anc, _, _ = s.recvmsg(256, 64)
    except socket.timeout:
        continue
    seq, sent = struct.unpack("!QQ", data[:16])
    for level, typ, val in anc:
        if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack("qq", val[:16])
            out.append(sec * 1_000_000_000 + nsec - sent)
print(" ".join(map(str, out)), flush=True)
"""


def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]


def run_once(wanem, ha, hb, delay_ms, pps, seconds):
    wanem_ctl(wanem, "clear")
    wanem_ctl(wanem, "reset-counters")
    if delay_ms:
        wanem_ctl(wanem, "set", "dir=up", f"delay={delay_ms}ms")
    count = int(pps * seconds)
    rx = hb.popen(["/usr/bin/python3", "-c", RECEIVER, "10.99.0.2", str(count),
                   str(seconds + 10)], stdout=subprocess.PIPE, text=True)
    assert rx.stdout.readline().strip() == "ready"
    ha.run(["/usr/bin/python3", "-c", SENDER, "10.99.0.2", str(pps), str(seconds)],
           timeout=seconds + 30)
    line = rx.stdout.readline().split()
    rx.wait(timeout=30)
    excess = [(int(x) - delay_ms * 1_000_000) / 1e3 for x in line]  # us
    st = json.loads(wanem_ctl(wanem, "status"))["up"]
    return excess, count, st


def wanem_ctl(wanem, *words):
    exe, sock = wanem
    return netns.run([exe, "ctl", sock, *words]).stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--delay-ms", type=float, default=40.0)
    ap.add_argument("--pps", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--spinners", type=int, default=0)
    ap.add_argument("--realtime", type=int, default=None,
                    help="sdwan-wanem --realtime PRIORITY (default: the emulator's own, 10)")
    ap.add_argument("--nice", type=int, default=0, help="run sdwan-wanem under nice -n NICE")
    args = ap.parse_args()
    exe = os.environ.get("SDWAN_WANEM") or str(netns.build_dir() / "tests/lab/wanem/sdwan-wanem")

    lab = netns.Lab(Path(f"/tmp/wanem-precision-{os.getpid()}"))
    lab.workdir.mkdir(parents=True, exist_ok=True)
    spinners = []
    try:
        ha, em, hb = lab.netns("pha"), lab.netns("pem"), lab.netns("phb")
        a_host, a_em = lab.veth(ha, em)
        b_em, b_host = lab.veth(em, hb)
        lab.host(ha, a_host, "10.99.0.1/24")
        lab.host(hb, b_host, "10.99.0.2/24")
        for ns, ifname in ((ha, a_host), (hb, b_host)):
            ns.run(["ethtool", "-K", ifname, "tx", "off", "tso", "off", "gso", "off"])
        sock = str(lab.workdir / "wanem.sock")
        rt = [] if args.realtime is None else ["--realtime", str(args.realtime)]
        em.popen(["nice", "-n", str(args.nice), exe, "--a", a_em, "--b", b_em, "--control", sock,
                  "--seed", "1", *rt], stderr=subprocess.DEVNULL)
        netns.wait_for(lambda: os.path.exists(sock), timeout=10, what="wanem socket")
        ha.run(["ping", "-c", "3", "-i", "0.1", "10.99.0.2"])
        for _ in range(args.spinners):
            spinners.append(subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"]))
        for delay in (0.0, args.delay_ms):
            excess, count, st = run_once((exe, sock), ha, hb, delay, args.pps, args.seconds)
            lat = st["lateness_us"]
            prio = json.loads(wanem_ctl((exe, sock), "status"))["realtime_priority"]
            print(f"delay {delay:g} ms, {args.pps:g} pps, {args.spinners} spinners, "
                  f"SCHED_FIFO {prio}, nice {args.nice}: {len(excess)}/{count} received; "
                  f"excess one-way delay us: median {statistics.median(excess):.1f} mean "
                  f"{statistics.mean(excess):.1f} p99 {pct(excess, 0.99):.1f} "
                  f"max {max(excess):.1f}; emulator lateness us: mean {lat['mean']} "
                  f"p99 {lat['p99']} max {lat['max']}")
    finally:
        for p in spinners:
            p.kill()
            p.wait()
        lab.close()


if __name__ == "__main__":
    main()
