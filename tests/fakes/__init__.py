"""Real in-process stand-ins for the parts of a node that cannot run in tests (kubelet, CRI runtime)."""
