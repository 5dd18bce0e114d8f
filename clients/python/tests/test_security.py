"""TLS, mutual TLS and API tokens from the Python client, against a real
`crms server` started with --tls-cert/--tls-key/--client-ca and a bootstrap
admin token file (certificates made with openssl)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import crms

from conftest import CRMS_JS, Proc, _free_ports


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _pki(d: Path, label: str) -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{label}-ca.key", "-out",
             f"{label}-ca.pem", "-days", "2", "-subj", f"/CN={label} CA", cwd=d)
    return d / f"{label}-ca.pem"


def _issue(d: Path, label: str, name: str, server: bool) -> tuple[Path, Path]:
    ext = d / f"{name}.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "extendedKeyUsage=clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{label}-ca.pem", "-CAkey", f"{label}-ca.key",
             "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", ext.name, cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture(scope="module")
def secure_cluster(tmp_root):
    if shutil.which("openssl") is None or shutil.which("etcd") is None:
        pytest.skip("needs openssl and etcd")
    d = tmp_root / "tls"
    d.mkdir()
    ca = _pki(d, "good")
    server_cert, server_key = _issue(d, "good", "server", True)
    client_cert, client_key = _issue(d, "good", "client", False)
    _pki(d, "evil")
    evil_cert, evil_key = _issue(d, "evil", "evil-client", False)
    etcd_port, peer = _free_ports(2, consecutive=True)
    (port,) = _free_ports(1)
    etcd = Proc(
        ["etcd", "--data-dir", str(d / "etcd"), "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls",
         f"http://127.0.0.1:{peer}", "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
        d / "etcd.log", ready="ready to serve client requests")
    token_file = d / "admin.token"
    server = Proc(
        ["node", str(CRMS_JS), "server", "--listen", f"127.0.0.1:{port}", "--etcd", f"http://127.0.0.1:{etcd_port}",
         "--tls-cert", str(server_cert), "--tls-key", str(server_key), "--client-ca", str(ca),
         "--admin-token-file", str(token_file), "--no-history"],
        d / "server.log", ready="control plane serving")
    try:
        yield {
            "address": f"127.0.0.1:{port}", "ca": str(ca), "cert": str(client_cert), "key": str(client_key),
            "evil_cert": str(evil_cert), "evil_key": str(evil_key), "token": token_file.read_text().strip(),
        }
    finally:
        server.stop()
        etcd.stop()


def test_mutual_tls_and_tokens(secure_cluster):
    s = secure_cluster
    with crms.Client(s["address"], ca=s["ca"], cert=s["cert"], key=s["key"], token=s["token"]) as admin:
        made = admin.admin_service.CreateToken(crms.v1.admin_pb2.CreateTokenRequest(name="pyreader", role="reader"))
        job = admin.submit(["true"], hold=True)
        assert admin.get_job(job.id).id == job.id
    # A reader token: reads work, submitting is PERMISSION_DENIED.
    with crms.Client(s["address"], ca=s["ca"], cert=s["cert"], key=s["key"], token=made.secret) as reader:
        assert reader.get_job(job.id).id == job.id
        with pytest.raises(crms.PermissionDenied):
            reader.submit(["true"])
    # Right certificate, no token: UNAUTHENTICATED.
    with crms.Client(s["address"], ca=s["ca"], cert=s["cert"], key=s["key"]) as anonymous:
        with pytest.raises(crms.Unauthenticated):
            anonymous.get_job(job.id)
    # A certificate from another CA, or none: the TLS handshake fails.
    for cert, key in ((s["evil_cert"], s["evil_key"]), (None, None)):
        with crms.Client(s["address"], ca=s["ca"], cert=cert, key=key, token=s["token"], timeout=5) as c:
            with pytest.raises(crms.Unavailable):
                c.get_job(job.id)


def test_options_come_from_the_environment(secure_cluster, monkeypatch):
    s = secure_cluster
    monkeypatch.setenv("CRMS_CA", s["ca"])
    monkeypatch.setenv("CRMS_CERT", s["cert"])
    monkeypatch.setenv("CRMS_KEY", s["key"])
    monkeypatch.setenv("CRMS_TOKEN", s["token"])
    with crms.Client(s["address"]) as c:
        assert c.submit(["true"], hold=True).id


def test_jobs_carry_their_submitter_and_only_an_admin_changes_queues(secure_cluster):
    s = secure_cluster
    tls = dict(ca=s["ca"], cert=s["cert"], key=s["key"])
    with crms.Client(s["address"], token=s["token"], **tls) as admin:
        made = admin.admin_service.CreateToken(crms.v1.admin_pb2.CreateTokenRequest(name="pysubmitter", role="submitter"))
        assert admin.create_queue("py-allowed").name == "py-allowed"
    with crms.Client(s["address"], token=made.secret, **tls) as submitter:
        job = submitter.submit(["true"], hold=True, labels={"crms.io/owner": "someone-else"})
        assert job.user == "pysubmitter"
        with pytest.raises(crms.PermissionDenied):
            submitter.create_queue("py-not-allowed")
        with pytest.raises(crms.PermissionDenied):
            submitter.delete_queue("py-allowed")
        assert [q.name for q in submitter.list_queues()][:1] == ["default"]
        assert submitter.get_queue("py-allowed").name == "py-allowed"
