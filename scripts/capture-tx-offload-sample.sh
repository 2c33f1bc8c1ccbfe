#!/usr/bin/env bash
# Takes samples/tx-offload.pcapng again: a real capture on a veth whose tx checksum
# offload is on (the default), so TCP and UDP packets are captured with partial checksums
# (the pseudo-header sum the kernel leaves for the device) and TCP sends of 3 KiB as TSO
# super-frames. Needs root and dumpcap (Debian: tshark). Everything it creates lives in two
# namespaces of its own, removed on exit.
set -euo pipefail
out=${1:-samples/tx-offload.pcapng}
A=pvs-a-$$
B=pvs-b-$$
cleanup() { ip netns del "$A" 2>/dev/null || true; ip netns del "$B" 2>/dev/null || true; }
trap cleanup EXIT INT TERM
ip netns add "$A"
ip netns add "$B"
ip link add va netns "$A" type veth peer name vb netns "$B"
ip -n "$A" addr add 10.99.0.1/24 dev va
ip -n "$B" addr add 10.99.0.2/24 dev vb
ip -n "$A" addr add fd99::1/64 dev va nodad
ip -n "$B" addr add fd99::2/64 dev vb nodad
for ns in "$A" "$B"; do ip -n "$ns" link set lo up; done
ip -n "$A" link set va up
ip -n "$B" link set vb up
tmp=$(mktemp /tmp/pvnet-capture-XXXXXX.pcapng)
ip netns exec "$A" dumpcap -q -i va -w "$tmp" -c 40 -s 256 2>/dev/null &
dumpcap_pid=$!
sleep 1.5
ip netns exec "$B" python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.99.0.2", 5001)); s.listen()
s6 = socket.socket(socket.AF_INET6); s6.bind(("fd99::2", 5001)); s6.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("10.99.0.2", 5002))
for srv in (s, s6):
    c, _ = srv.accept()
    while c.recv(65536):
        pass
    c.close()
' &
server_pid=$!
sleep 0.5
ip netns exec "$A" python3 -c '
import socket
for fam, addr in ((socket.AF_INET, "10.99.0.2"), (socket.AF_INET6, "fd99::2")):
    c = socket.socket(fam); c.connect((addr, 5001)); c.sendall(bytes(range(256)) * 12); c.close()
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"hello from a tx-offload host", ("10.99.0.2", 5002))
socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).sendto(b"and over IPv6", ("fd99::2", 5002))
'
wait "$server_pid" || true
sleep 1
kill "$dumpcap_pid" 2>/dev/null || true
wait "$dumpcap_pid" 2>/dev/null || true
mv "$tmp" "$out"
chmod 644 "$out"
echo "wrote $out" >&2
