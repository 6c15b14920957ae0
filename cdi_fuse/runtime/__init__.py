"""The node's container runtime, asked over CRI (cri, crio), and its configuration for CDI (config)."""
