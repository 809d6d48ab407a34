"""The network plumbing of bridge networks: what the kernel must hold for core/networks.py.

    bridge.py  links by netlink (pyroute2): a network's bridge, a container's veth pair
    nat.py     nftables (libnftables' JSON): NAT, published ports, the forward filter
    dns.py     the embedded DNS responder: a network's container names on its gateway

Every function acts in the network namespace of the calling thread (the host's, for the
engine; the one a test made, for the tests), and reaches a container's namespace only
through the pid or namespace fd it is given. Nothing here decides anything: subnets,
addresses, ports and names come from core/networks.py through what the log holds, and the
names of the kernel's objects are derived from the ids, so reconcile can list what lamina
owns (`bridge.links`, `nat.owned`) and remove what the log does not know.
"""
