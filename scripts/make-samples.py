#!/usr/bin/env python3
"""Writes the hand-built sample captures in samples/ (run from the repository root).

Every frame is built byte by byte here so that the expected checksum verdict of each one is
known by construction: good, bad, partial (the field holds the folded pseudo-header sum, as a
host with tx checksum offload leaves it), absent (UDPv4 zero) or n/a. The same frames are
written as classic pcap (little-endian, microseconds) and as pcapng (nanosecond if_tsresol),
so both readers are exercised. Deterministic: re-running gives identical files.
"""
import struct
import sys

# ---------------------------------------------------------------- checksum helpers


def ones_sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def csum(data: bytes) -> int:
    return (~ones_sum(data)) & 0xFFFF


def pseudo4(src, dst, proto, length):
    return src + dst + struct.pack("!BBH", 0, proto, length)


def pseudo6(src, dst, proto, length):
    return src + dst + struct.pack("!I3xB", length, proto)


# ---------------------------------------------------------------- layer builders

MAC_A = bytes.fromhex("020000000001")
MAC_B = bytes.fromhex("020000000002")
V4_A = bytes([10, 0, 0, 1])
V4_B = bytes([10, 0, 0, 2])
V6_A = bytes.fromhex("fd000000000000000000000000000001")
V6_B = bytes.fromhex("fd000000000000000000000000000002")
V6_C = bytes.fromhex("fd000000000000000000000000000003")


def eth(ethertype, tags=()):
    out = MAC_B + MAC_A
    for tpid, vid in tags:
        out += struct.pack("!HH", tpid, vid)
    return out + struct.pack("!H", ethertype)


def ipv4(proto, l4, options=b"", ttl=64, ident=0x1234, bad_csum=False, frag=0):
    ihl = 5 + len(options) // 4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, ihl * 4 + len(l4), ident, frag,
                      ttl, proto, 0, V4_A, V4_B) + options
    c = csum(hdr)
    if bad_csum:
        c ^= 0x0101
    return hdr[:10] + struct.pack("!H", c) + hdr[12:] + l4


def ipv6(next_hdr, l4, ext=b"", hop_limit=64, dst=V6_B):
    return struct.pack("!IHBB16s16s", 0x60000000, len(ext) + len(l4), next_hdr, hop_limit,
                       V6_A, dst) + ext + l4


def tcp(payload, flags=0x18, options=b"", seq=1000, ack=2000):
    doff = 5 + len(options) // 4
    return struct.pack("!HHIIBBHHH", 40000, 5201, seq, ack, doff << 4, flags, 65535, 0,
                       0) + options + payload


def udp(payload, sport=40001, dport=47000):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def set_l4_csum(l4, off, pseudo, mode):
    """Fill the L4 checksum field at `off` according to `mode`."""
    l4 = bytearray(l4)
    l4[off:off + 2] = b"\0\0"
    if mode == "good":
        c = csum(pseudo + bytes(l4))
        if c == 0 and off == 6:
            c = 0xFFFF
    elif mode == "partial":
        c = ones_sum(pseudo)
    elif mode == "bad":
        c = csum(pseudo + bytes(l4)) ^ 0x5A5A
    elif mode == "absent":
        c = 0
    else:
        raise ValueError(mode)
    l4[off:off + 2] = struct.pack("!H", c)
    return bytes(l4)


def tcp4(payload, mode="good", **kw):
    opts = kw.pop("ip_options", b"")
    seg = tcp(payload, **kw)
    seg = set_l4_csum(seg, 16, pseudo4(V4_A, V4_B, 6, len(seg)), mode)
    return ipv4(6, seg, options=opts)


def udp4(payload, mode="good"):
    dg = udp(payload)
    dg = set_l4_csum(dg, 6, pseudo4(V4_A, V4_B, 17, len(dg)), mode)
    return ipv4(17, dg)


def tcp6(payload, mode="good", ext=b"", first_nh=6, pseudo_dst=V6_B, **kw):
    seg = tcp(payload, **kw)
    seg = set_l4_csum(seg, 16, pseudo6(V6_A, pseudo_dst, 6, len(seg)), mode)
    return ipv6(first_nh, seg, ext=ext)


def udp6(payload, mode="good"):
    dg = udp(payload)
    dg = set_l4_csum(dg, 6, pseudo6(V6_A, V6_B, 17, len(dg)), mode)
    return ipv6(17, dg)


def payload(n, seed):
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(n))


# ---------------------------------------------------------------- the frames

TS_OPT = bytes([1, 1, 8, 10]) + struct.pack("!II", 123456, 654321)  # NOP NOP timestamps
MSS_OPT = bytes([2, 4, 0x05, 0xB4])
IP_OPT_RA = bytes([0x94, 0x04, 0x00, 0x00])  # router alert, 4 bytes
HOP_BY_HOP = bytes([60, 0, 1, 4, 0, 0, 0, 0])  # next=dest opts, PadN
DEST_OPTS = bytes([6, 0, 1, 4, 0, 0, 0, 0])  # next=TCP, PadN


def routing_type0(next_hdr, addrs, segments_left):
    return struct.pack("!BBBB4x", next_hdr, 2 * len(addrs), 0, segments_left) + b"".join(addrs)


def arp():
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, MAC_A, V4_A, b"\0" * 6, V4_B)
    return eth(0x0806) + body + b"\0" * 18  # padded to 60 bytes


def icmp4():
    body = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + payload(32, 9)
    body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
    return eth(0x0800) + ipv4(1, body)


def clean_frames():
    """Frames whose every checksum is good, absent or n/a: `pvnet pcap csum` exits 0."""
    return [
        arp(),
        eth(0x0800) + tcp4(b"", flags=0x02, options=MSS_OPT),  # SYN
        eth(0x0800) + tcp4(payload(100, 1), options=TS_OPT),
        eth(0x0800) + udp4(payload(37, 2)),  # odd length
        eth(0x0800) + udp4(payload(12, 3), mode="absent"),
        icmp4(),
        eth(0x86DD) + tcp6(payload(1200, 4)),
        eth(0x86DD) + udp6(payload(61, 5)),
        eth(0x86DD) + tcp6(payload(333, 6), ext=HOP_BY_HOP + DEST_OPTS, first_nh=0),
        eth(0x0800, tags=[(0x8100, 10)]) + tcp4(payload(1448, 7)),
        eth(0x0800, tags=[(0x88A8, 100), (0x8100, 10)]) + udp4(payload(200, 8)),
        eth(0x0800) + tcp4(payload(64, 9), ip_options=IP_OPT_RA),
        eth(0x0800) + udp4(b""),  # empty datagram
    ]


def mixed_frames():
    """Every verdict at least once, including the partial sums of a tx-offload host."""
    return clean_frames() + [
        eth(0x0800) + tcp4(payload(1448, 10), mode="partial"),
        eth(0x0800) + tcp4(payload(500, 11), mode="bad"),
        eth(0x0800) + udp4(payload(100, 12), mode="partial"),
        eth(0x0800) + udp4(payload(101, 13), mode="bad"),
        eth(0x86DD) + tcp6(payload(4000, 14), mode="partial"),
        eth(0x86DD) + udp6(payload(99, 15), mode="bad"),
        eth(0x86DD) + udp6(payload(10, 16), mode="absent"),  # zero is illegal in IPv6: bad
        eth(0x0800) + ipv4(6, set_l4_csum(tcp(payload(80, 17)), 16,
                                          pseudo4(V4_A, V4_B, 6, 100), "good"), bad_csum=True),
        eth(0x0800, tags=[(0x8100, 20)]) + tcp4(payload(9000, 18), mode="partial"),
        # Ethernet padding after a short IPv4 packet must not enter the checksum.
        eth(0x0800) + udp4(b"\x01\x02") + b"\0" * 16,
    ]


def routing_frames():
    """IPv6 with a Routing header in transit: the pseudo-header uses the final destination."""
    rh = routing_type0(6, [V6_C], 1)
    return [
        eth(0x86DD) + tcp6(payload(77, 20), ext=rh, first_nh=43, pseudo_dst=V6_C),
    ]


def superframe_frames():
    """What a host with TSO/USO captures: super-frames with partial checksums, beside
    ordinary frames. `pvnet pcap segment` turns them into wire-sized frames."""
    return [
        arp(),
        eth(0x0800) + tcp4(b"", flags=0x02, options=MSS_OPT),
        eth(0x0800) + tcp4(payload(30000, 30), mode="partial", options=TS_OPT),
        eth(0x0800) + tcp4(payload(4000, 31), mode="partial", flags=0x19, seq=31000),  # FIN
        eth(0x0800) + tcp4(payload(900, 32), mode="partial"),  # fits in one segment
        eth(0x86DD) + tcp6(payload(20000, 33), mode="partial"),
        eth(0x86DD) + tcp6(payload(7777, 34), mode="partial", ext=HOP_BY_HOP + DEST_OPTS,
                           first_nh=0),
        eth(0x0800, tags=[(0x8100, 10)]) + tcp4(payload(12000, 35), mode="partial",
                                                 flags=0x98),  # CWR|PSH|ACK
        eth(0x0800, tags=[(0x88A8, 100), (0x8100, 10)]) + tcp4(payload(5000, 36), mode="bad"),
        eth(0x0800) + udp4(payload(5000, 37), mode="partial"),
        eth(0x86DD) + udp6(payload(4000, 38), mode="partial"),
        icmp4(),
        eth(0x0800) + udp4(payload(100, 39)),
    ]


# ---------------------------------------------------------------- file writers

BASE_TS = 1764000000  # 2025-11-24, seconds


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        for i, fr in enumerate(frames):
            f.write(struct.pack("<IIII", BASE_TS + i, 1000 * i + 17, len(fr), len(fr)))
            f.write(fr)


def pad4(b):
    return b + b"\0" * (-len(b) % 4)


def block(btype, body):
    total = 12 + len(body)
    return struct.pack("<II", btype, total) + body + struct.pack("<I", total)


def write_pcapng(path, frames):
    shb = block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
                + pad4(struct.pack("<HH", 4, len(b"pvnet samples")) + b"pvnet samples")
                + struct.pack("<HH", 0, 0))
    idb_opts = struct.pack("<HH", 9, 1) + pad4(bytes([9])) + struct.pack("<HH", 0, 0)  # ns
    idb = block(0x00000001, struct.pack("<HHI", 1, 0, 262144) + idb_opts)
    out = shb + idb
    for i, fr in enumerate(frames):
        ts = (BASE_TS + i) * 1_000_000_000 + 1_000_000 * i + 17
        epb = struct.pack("<IIIII", 0, ts >> 32, ts & 0xFFFFFFFF, len(fr), len(fr)) + pad4(fr)
        out += block(0x00000006, epb)
    with open(path, "wb") as f:
        f.write(out)


def main():
    outdir = sys.argv[1] if len(sys.argv) > 1 else "samples"
    write_pcap(f"{outdir}/clean.pcap", clean_frames())
    write_pcap(f"{outdir}/mixed.pcap", mixed_frames())
    write_pcapng(f"{outdir}/mixed.pcapng", mixed_frames())
    write_pcap(f"{outdir}/ipv6-routing.pcap", routing_frames())
    write_pcap(f"{outdir}/superframes.pcap", superframe_frames())
    write_pcapng(f"{outdir}/superframes.pcapng", superframe_frames())


if __name__ == "__main__":
    main()
