"""End-to-end tests against a real containerd (>= 1.7.2, CRI + CDI) fetched from Debian trixie."""
