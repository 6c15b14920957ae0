"""`cdi-fuse dra`: a Dynamic Resource Allocation kubelet plugin that hands out the node's CDI FUSE device.

Pieces, each usable alone: `api` (names, plain types, protocols), `sockets` (a gRPC service on a unix
socket it owns by inode), `registrar` (the plugin-registration service), `checkpoint` (prepared claims on
disk), `node_server` (NodePrepare/NodeUnprepareResources), `slices` (the node's ResourceSlice as data and
the plan that converges it), `publisher` (runs that plan against the API), `kube` (the API server through
the `kubernetes` client, imported only here), `driver` (the loop that wires them).
"""
