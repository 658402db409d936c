#!/usr/bin/python3
"""An independent decoder for sdwan's ESP: scapy's SecurityAssociation, and the cryptography
package's AESGCM for the trailer (scapy does not report it). Run by the component test
EspScapy.DecryptsOursAndWeDecryptTheirs (tests/component/esp_test.cpp), which writes the input
files into a fresh directory and reads the output back.

usage: esp_scapy_check.py DIR

DIR/ours.txt   frames made by esp_encrypt_burst, one per line:
                 name key salt spi esn esn_hi frame inner next_header
               (hex, except esn 0/1, esn_hi and next_header in decimal; inner "-" when empty).
               Each must be ESP in UDP 4500 with DF, TTL 64, a valid IPv4 checksum, UDP checksum
               0 and consistent lengths; scapy must authenticate and decrypt it to inner; its
               plaintext must be inner, padding 1, 2, 3... (fewer than 4 bytes, to a multiple
               of 4), pad length and next_header. Negative controls: with one ICV bit flipped
               scapy must refuse it, and with ESN so must an SA without ESN or with another
               high half (the high half is in the AAD).
DIR/make.txt   name key salt spi esn esn_hi seq_lo inner: scapy encrypts each inner IPv4 packet
               in tunnel mode in UDP 4500 with that sequence number; the frames go to
               DIR/theirs.txt as "name frame" for our inbound path to decrypt.

Prints one line per failure and a summary; exit status 0 only when every check passed.
"""
import os
import struct
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.compat import raw
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP, IPSecIntegrityError, SecurityAssociation
from scapy.layers.l2 import Ether


def make_sa(key, salt, spi, esn, esn_hi, src, dst):
    return SecurityAssociation(ESP, spi=spi, crypt_algo='AES-GCM', crypt_key=key + salt,
                               auth_algo='NULL', tunnel_header=IP(src=src, dst=dst),
                               nat_t_header=UDP(sport=4500, dport=4500),
                               esn_en=esn, esn=esn_hi)


def refuses(sa, frame):
    try:
        sa.decrypt(Ether(frame)[IP])
    except IPSecIntegrityError:
        return True
    return False


def check_ours(fields):
    name, key, salt, spi, esn, esn_hi, frame, inner, nh = fields
    key, salt, frame = bytes.fromhex(key), bytes.fromhex(salt), bytes.fromhex(frame)
    spi, esn, esn_hi, nh = int(spi, 16), esn == '1', int(esn_hi), int(nh)
    inner = b'' if inner == '-' else bytes.fromhex(inner)
    errors = []

    pkt = Ether(frame)
    if not pkt.haslayer(ESP) or not pkt.haslayer(UDP):
        return [f'{name}: scapy sees no ESP in UDP: {pkt.summary()}']
    ip, udp, esp = pkt[IP], pkt[UDP], pkt[ESP]
    if int(ip.flags) != 2 or ip.frag != 0:
        errors.append(f'{name}: outer IPv4 flags {ip.flags} offset {ip.frag}, want DF only')
    if ip.ttl != 64 or ip.proto != 17 or ip.ihl != 5:
        errors.append(f'{name}: outer IPv4 ttl {ip.ttl} proto {ip.proto} ihl {ip.ihl}')
    if ip.len != len(frame) - 14 or udp.len != ip.len - 20:
        errors.append(f'{name}: lengths ip {ip.len} udp {udp.len} frame {len(frame)}')
    fresh = IP(raw(ip)[:20])
    want_sum = fresh.chksum
    del fresh.chksum
    if IP(raw(fresh)).chksum != want_sum:
        errors.append(f'{name}: outer IPv4 checksum {want_sum:#06x} is wrong')
    if udp.chksum != 0 or udp.dport != 4500:
        errors.append(f'{name}: UDP checksum {udp.chksum} dport {udp.dport}')
    if esp.spi != spi:
        errors.append(f'{name}: SPI {esp.spi:#x}, want {spi:#x}')

    sa = make_sa(key, salt, spi, esn, esn_hi, ip.src, ip.dst)
    try:
        out = sa.decrypt(Ether(frame)[IP])
        if raw(out) != inner:
            errors.append(f'{name}: scapy decrypted {raw(out).hex()}, want {inner.hex()}')
    except IPSecIntegrityError as e:
        errors.append(f'{name}: scapy: the ICV does not verify ({e})')

    data = bytes(esp.data)
    aad = struct.pack('!LLL', spi, esn_hi, esp.seq) if esn else struct.pack('!LL', spi, esp.seq)
    try:
        plain = AESGCM(key).decrypt(salt + data[:8], data[8:], aad)
        pad = (4 - (len(inner) + 2) % 4) % 4
        want = inner + bytes(range(1, pad + 1)) + bytes([pad, nh])
        if plain != want:
            errors.append(f'{name}: plaintext {plain[-8:].hex()} ends wrong, want ...{want[-8:].hex()}')
    except InvalidTag:
        errors.append(f'{name}: cryptography: the ICV does not verify')

    flipped = bytearray(frame)
    flipped[-1] ^= 0x80
    if not refuses(sa, bytes(flipped)):
        errors.append(f'{name}: scapy accepted a flipped ICV bit (the check is vacuous)')
    if esn:
        if not refuses(make_sa(key, salt, spi, False, 0, ip.src, ip.dst), frame):
            errors.append(f'{name}: an SA without ESN accepted an ESN packet')
        if not refuses(make_sa(key, salt, spi, True, esn_hi + 1, ip.src, ip.dst), frame):
            errors.append(f'{name}: another ESN high half was accepted')
    return errors


def make_theirs(fields):
    name, key, salt, spi, esn, esn_hi, seq_lo, inner = fields
    key, salt, inner = bytes.fromhex(key), bytes.fromhex(salt), bytes.fromhex(inner)
    spi, esn, esn_hi, seq_lo = int(spi, 16), esn == '1', int(esn_hi), int(seq_lo)
    inner_pkt = IP(inner)
    if raw(inner_pkt) != inner:
        raise ValueError(f'{name}: scapy does not reproduce the inner packet byte for byte')
    sa = make_sa(key, salt, spi, esn, esn_hi, '10.1.1.2', '10.1.0.2')
    enc = sa.encrypt(inner_pkt, seq_num=seq_lo)
    # scapy 2.5 builds the NAT-T UDP header before the ESP payload is attached and so leaves
    # its length at 8; a receiver that reads the UDP length (ours does) sees no ESP at all.
    enc[UDP].len = 8 + len(raw(enc[ESP]))
    frame = Ether(dst='02:00:00:00:00:01', src='02:00:00:00:00:02') / enc
    return f'{name} {raw(frame).hex()}\n'


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    d = sys.argv[1]
    failures = []
    n_ours = 0
    with open(os.path.join(d, 'ours.txt')) as f:
        for line in f:
            if line.strip():
                failures += check_ours(line.split())
                n_ours += 1
    n_made = 0
    with open(os.path.join(d, 'make.txt')) as f, open(os.path.join(d, 'theirs.txt'), 'w') as out:
        for line in f:
            if line.strip():
                out.write(make_theirs(line.split()))
                n_made += 1
    for msg in failures:
        print(msg)
    print(f'ours: {n_ours} packets verified' if not failures else f'ours: {len(failures)} failures in {n_ours} packets')
    print(f'theirs: {n_made} packets made')
    return 0 if not failures and n_ours > 0 and n_made > 0 else 1


if __name__ == '__main__':
    sys.exit(main())
