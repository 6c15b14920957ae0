"""Certificates and kubeconfigs for the test cluster, made with the ``openssl`` command.

One throw-away CA signs everything: the apiserver's serving cert (127.0.0.1, localhost and the
``kubernetes`` service names), client certs whose subject is what Node+RBAC authorization expects
(``system:node:<node>`` in ``system:nodes`` for the kubelet, ``system:kube-controller-manager``,
``system:kube-scheduler``, an admin in ``system:masters``), and the apiserver's client cert for the kubelet.
The ServiceAccount token signing key is a separate RSA pair. Keys stay in the cluster's temp dir.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

VALID_DAYS = "3"
_EC = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]


class PkiError(Exception):
    """openssl failed; the message carries its output."""


def _openssl(*args: str) -> None:
    try:
        subprocess.run(["openssl", *args], capture_output=True, text=True, check=True, timeout=60)
    except subprocess.CalledProcessError as exc:
        raise PkiError(f"openssl {' '.join(args[:2])} failed: {exc.stderr.strip()}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PkiError(f"openssl {' '.join(args[:2])} could not run: {exc}") from exc


@dataclass(frozen=True)
class KeyPair:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ClusterPki:
    ca: KeyPair
    apiserver: KeyPair
    apiserver_kubelet_client: KeyPair
    admin: KeyPair
    kubelet: KeyPair
    controller_manager: KeyPair
    scheduler: KeyPair
    service_account_key: Path
    service_account_pub: Path


def _subject(common_name: str, organizations: tuple[str, ...]) -> str:
    return "".join(f"/O={org}" for org in organizations) + f"/CN={common_name}"


def make_ca(directory: Path, name: str = "ca") -> KeyPair:
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    _openssl(
        "req", "-x509", *_EC, "-days", VALID_DAYS, "-subj", "/CN=cdi-fuse-test-cluster-ca",
        "-keyout", str(pair.key), "-out", str(pair.cert),
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )  # fmt: skip
    pair.key.chmod(0o600)
    return pair


def make_cert(
    ca: KeyPair,
    directory: Path,
    name: str,
    *,
    common_name: str,
    organizations: tuple[str, ...] = (),
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    server: bool = False,
) -> KeyPair:
    """A leaf cert signed by ``ca``: client auth always, server auth when ``server``."""
    pair = KeyPair(directory / f"{name}.crt", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    extensions = directory / f"{name}.ext"
    usages = "serverAuth,clientAuth" if server else "clientAuth"
    lines = [
        "basicConstraints=critical,CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        f"extendedKeyUsage={usages}",
    ]
    sans = [f"DNS:{dns}" for dns in dns_names] + [f"IP:{ip}" for ip in ip_addresses]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    extensions.write_text("\n".join(lines) + "\n")
    _openssl(
        "req", "-new", *_EC, "-subj", _subject(common_name, organizations), "-keyout", str(pair.key), "-out", str(csr)
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
        "-days", VALID_DAYS, "-extfile", str(extensions), "-out", str(pair.cert),
    )  # fmt: skip
    pair.key.chmod(0o600)
    csr.unlink()
    extensions.unlink()
    return pair


def make_cluster_pki(directory: Path, *, node_name: str, service_ip: str) -> ClusterPki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = make_ca(directory)
    apiserver = make_cert(
        ca,
        directory,
        "apiserver",
        common_name="kube-apiserver",
        dns_names=("localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"),
        ip_addresses=("127.0.0.1", service_ip),
        server=True,
    )
    sa_key, sa_pub = directory / "sa.key", directory / "sa.pub"
    _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(sa_key))
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_pub))
    return ClusterPki(
        ca=ca,
        apiserver=apiserver,
        apiserver_kubelet_client=make_cert(
            ca, directory, "apiserver-kubelet-client", common_name="kube-apiserver", organizations=("system:masters",)
        ),
        admin=make_cert(ca, directory, "admin", common_name="cdi-fuse-admin", organizations=("system:masters",)),
        kubelet=make_cert(
            ca, directory, "kubelet", common_name=f"system:node:{node_name}", organizations=("system:nodes",)
        ),
        controller_manager=make_cert(ca, directory, "controller-manager", common_name="system:kube-controller-manager"),
        scheduler=make_cert(ca, directory, "scheduler", common_name="system:kube-scheduler"),
        service_account_key=sa_key,
        service_account_pub=sa_pub,
    )


def write_kubeconfig(path: Path, *, server: str, ca: Path, client: KeyPair, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "cdi-fuse-test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(client.cert), "client-key": str(client.key)}}],
        "contexts": [{"name": "default", "context": {"cluster": "cdi-fuse-test", "user": user}}],
        "current-context": "default",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
