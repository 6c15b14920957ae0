#!/bin/sh
# Installs the Debian packages the end-to-end tests drive. Does nothing when they are present;
# as non-root it only reports what is missing (those tests then skip and say why).
set -eu
# Arguments replace the default list (the Makefile asks for python3-venv alone when venv is missing).
PACKAGES="${*:-podman runc bindfs fuse3 apparmor util-linux}"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "install-system-deps: not root; missing:$missing (real-runtime tests will skip)" >&2
    exit 0
fi
echo "install-system-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
