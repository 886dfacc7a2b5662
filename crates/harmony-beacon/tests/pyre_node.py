"""One pyre node for harmony-beacon's interop test.

Prints the node's UUID (hex) on stdout, then runs until stdin closes (or a time limit passes),
then stops, which sends pyre's port-0 goodbye beacon.
"""
import select
import sys

from pyre import Pyre

LIMIT_S = float(sys.argv[1]) if len(sys.argv) > 1 else 30.0

node = Pyre("harmony-beacon-interop")
node.start()
print(node.uuid().hex, flush=True)
select.select([sys.stdin], [], [], LIMIT_S)
node.stop()
print("stopped", flush=True)
