"""Start the test cluster by hand, for poking at it: ``sudo CDI_FUSE_K8S_BIN=... .venv/bin/python -m
tests.e2e.cluster.up [--plugin] [--examples-image]``. Prints the admin kubeconfig; stops (and cleans up
everything) on Ctrl-C or SIGTERM. Holds the cluster lock like the tests, so it cannot run next to them.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
import threading
from pathlib import Path

from tests.e2e.cluster import binaries, cluster, images, plugin
from tests.e2e.containerd import fetch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--plugin", action="store_true", help="build the plugin image and apply overlays/default")
    parser.add_argument("--examples-image", action="store_true", help="build and import the examples image")
    args = parser.parse_args()
    bins = binaries.find_binaries()
    install = fetch.ensure_containerd()
    work = Path(tempfile.mkdtemp(prefix="cdfu-"))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with cluster.cluster_lock():
        cluster.sweep_stale()
        running = cluster.Cluster(bins, install, sandbox_image=images.SANDBOX_IMAGE)
        try:
            seconds = running.start(sandbox_archive=images.sandbox_image_archive(work))
            print(f"node Ready after {seconds:.1f}s", flush=True)
            assert running.containerd is not None
            if args.examples_image:
                running.containerd.import_image(images.build_examples_image(work))
            if args.plugin:
                running.containerd.import_image(images.build_plugin_image(plugin.REPO, work))
                print(plugin.deploy(running), flush=True)
            print(f"export KUBECONFIG={running.admin_kubeconfig}", flush=True)
            print(f"logs in {running.logs}; node paths under {running.base}", flush=True)
            try:
                while not stop.wait(1):
                    pass
            except KeyboardInterrupt:
                pass
        finally:
            print(f"stopped; restored {running.stop()}", flush=True)
            print(f"left: {cluster.leftovers(running)}", flush=True)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
