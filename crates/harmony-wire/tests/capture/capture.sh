#!/bin/sh
# Re-captures the golden vectors in ../data (needs root, iproute2, and the workspace .venv with
# pyzmq and zeromq-pyre). Same layout as harmony_testkit::NetnsPair: two fresh namespaces joined
# by a veth pair, 10.77.0.1/24 (pyre) and 10.77.0.2/24 (the recorder); no packet leaves them.
#   sudo crates/harmony-wire/tests/capture/capture.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
data="$here/../data"
py="${HARMONY_PYTHON:-$here/../../../../.venv/bin/python}"
a=hcapa$$ b=hcapb$$
cleanup() { ip netns delete "$a" 2>/dev/null || true; ip netns delete "$b" 2>/dev/null || true; }
trap cleanup EXIT
ip netns add "$a"
ip netns add "$b"
ip link add hc$$a netns "$a" type veth peer name hc$$b netns "$b"
ip -n "$a" link set lo up
ip -n "$b" link set lo up
ip -n "$a" addr add 10.77.0.1/24 dev hc$$a
ip -n "$b" addr add 10.77.0.2/24 dev hc$$b
ip -n "$a" link set hc$$a up
ip -n "$b" link set hc$$b up

cd "$here"
ip netns exec "$b" "$py" zre_peer.py 10.77.0.255 10.77.0.2 "$data/pyre-zre.txt" &
recorder=$!
timeout 90 ip netns exec "$a" "$py" pyre_node.py
wait "$recorder"
# The pyzmq handshakes go over loopback, inside namespace b too.
ip netns exec "$b" "$py" zmtp_handshake.py "$data/pyzmq-zmtp.txt"
echo "wrote $data/pyre-zre.txt $data/pyzmq-zmtp.txt"
