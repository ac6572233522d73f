"""SSH without a cluster: host names, the client's config, keys, the pump, the WebSocket codec."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from mmerep import environments, sshkeys
from mmerep.errors import KubeError, UsageError
from mmerep.portforward import PortForward
from mmerep.profiles import validate
from mmerep.ssh.config import EnvKeys, known_hosts, replace_block, ssh_config
from mmerep.ssh.hosts import parse_host
from mmerep.ssh.pump import SocketStream, pump
from testkit.scripted_http import scripted_server

DEV = validate("dev-s3", {"context": "mmerep-general-dev", "namespace": "s3",
                          "registry": "harbor.example.org", "project": "mme-rep"})
LOCAL = validate("local", {"context": "mmerep-local", "namespace": "mmerep",
                           "registry": "local", "project": "mme-rep",
                           "ssh_domain": "mmerep-local"})
DOTTED = validate("prod", {"context": "ctx", "namespace": "p", "registry": "h.example.org",
                           "project": "x", "ssh_domain": "ssh.example.org"})
PROFILES = [DEV, LOCAL, DOTTED]


def test_host_names_read_right_to_left() -> None:
    host = parse_host("sentinel3-scheduler.dev-s3.mmerep-general-dev", PROFILES)
    assert (host.env, host.component, host.profile) == ("sentinel3", "scheduler", "dev-s3")
    host = parse_host("s3-olci-dev-interactive.local.mmerep-local", PROFILES)
    assert (host.env, host.component, host.profile) == ("s3-olci-dev", "interactive", "local")
    host = parse_host("Sentinel3-Scheduler.prod.ssh.example.org.", PROFILES)
    assert (host.env, host.component, host.profile) == ("sentinel3", "scheduler", "prod")


@pytest.mark.parametrize(("host", "message"), [
    ("sentinel3-scheduler.nowhere.example", "names no profile's environment"),
    ("sentinel3.dev-s3.mmerep-general-dev", "is not <environment>-<component>"),
    ("a.b-scheduler.dev-s3.mmerep-general-dev", "is not <environment>-<component>"),
    ("-scheduler.local.mmerep-local", "is not <environment>-<component>"),
])
def test_bad_host_names_say_what_is_expected(host: str, message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_host(host, PROFILES)
    assert message in info.value.message


ENVS = [EnvKeys("sentinel3", ("scheduler",),
                ("ssh-ed25519 AAAAkey1", "ecdsa-sha2-nistp256 AAAAkey2")),
        EnvKeys("olci", ("interactive",), ("ssh-ed25519 AAAAkey3",))]


def test_config_block_proxies_the_profile_pattern_and_pins_keys() -> None:
    block = ssh_config(LOCAL, ENVS, proxy=["/opt/py dir/python", "-m", "mmerep", "ssh", "proxy"],
                       known_hosts="/home/u/.ssh/mme-rep/local.known_hosts")
    lines = [line.strip() for line in block.splitlines()]
    assert "Host *.local.mmerep-local" in lines
    assert "ProxyCommand '/opt/py dir/python' -m mmerep ssh proxy %h %p" in lines
    assert "StrictHostKeyChecking yes" in lines
    assert "UserKnownHostsFile /home/u/.ssh/mme-rep/local.known_hosts" in lines
    assert "HostKeyAlias sentinel3-scheduler.local.mmerep-local" in lines
    assert "HostKeyAlias olci-interactive.local.mmerep-local" in lines
    assert "no" not in " ".join(line.split()[-1] for line in lines if "Strict" in line)


def test_known_hosts_has_each_key_under_each_host_name() -> None:
    text = known_hosts(DEV, ENVS)
    assert text.splitlines() == [
        "olci-interactive.dev-s3.mmerep-general-dev ssh-ed25519 AAAAkey3",
        "sentinel3-scheduler.dev-s3.mmerep-general-dev ssh-ed25519 AAAAkey1",
        "sentinel3-scheduler.dev-s3.mmerep-general-dev ecdsa-sha2-nistp256 AAAAkey2"]


def test_writing_the_block_twice_leaves_one_and_keeps_the_rest() -> None:
    block = ssh_config(LOCAL, ENVS, proxy=["mme-rep", "ssh", "proxy"], known_hosts="/k")
    mine = "Host gitlab\n    User git\n"
    once = replace_block(mine, block, "local")
    newer = ssh_config(LOCAL, ENVS[:1], proxy=["mme-rep", "ssh", "proxy"], known_hosts="/k")
    twice = replace_block(once, newer, "local")
    assert twice.startswith(mine) and twice.count("# >>> mme-rep ssh: profile local") == 1
    assert "olci-interactive" not in twice and "sentinel3-scheduler" in twice
    other = replace_block(twice, ssh_config(DEV, [], proxy=["x"], known_hosts="/d"), "dev-s3")
    assert other.count("# >>> mme-rep ssh") == 2 and "Host *.dev-s3.mmerep-general-dev" in other
    assert replace_block(other, newer, "local") == other


def test_host_keys_are_generated_once_and_kept() -> None:
    data = sshkeys.fill_host_keys({}, ("ssh_host_ed25519_key", "ssh_host_ecdsa_key"))
    assert set(data) == {"ssh_host_ed25519_key", "ssh_host_ed25519_key.pub",
                         "ssh_host_ecdsa_key", "ssh_host_ecdsa_key.pub"}
    private = base64.b64decode(data["ssh_host_ed25519_key"]).decode()
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert base64.b64decode(data["ssh_host_ecdsa_key.pub"]).startswith(b"ecdsa-sha2-nistp256 ")
    assert sshkeys.fill_host_keys(data, ("ssh_host_ed25519_key", "ssh_host_ecdsa_key")) == data


def test_a_deploy_generates_host_keys_known_hosts_and_seeded_authorized_keys(
        tmp_path: Path) -> None:
    key = _user_key(tmp_path)
    rendered = environments.render_environment(
        DEV, "htcondor-batch", "sentinel3:v0.1.0", resolve=False,
        params={"authorized_keys": f"# team\n{key}\n"})
    made = {f"{o['kind']}/{o['metadata']['name']}": o
            for o in environments.generated_secrets(None, rendered)}
    secret = made["Secret/sentinel3-ssh-hostkeys"]
    known = made["ConfigMap/sentinel3-ssh-known-hosts"]["data"]
    assert known["components"] == "scheduler"
    assert base64.b64decode(secret["data"]["ssh_host_ed25519_key.pub"]).decode() == \
        known["ssh_host_ed25519_key.pub"]
    assert made["ConfigMap/sentinel3-ssh-authorized-keys"]["data"] == {
        "authorized_keys": f"{key}\n"}
    objects = {f"{o['kind']}/{o['metadata']['name']}": o for o in rendered.objects}
    sshd = objects["ConfigMap/sentinel3-ssh"]
    assert "authorized_keys" not in sshd["data"]
    assert "HostKey /etc/mme-rep/ssh-host/ssh_host_ed25519_key" in sshd["data"]["sshd_config"]
    pod = objects["Deployment/sentinel3-scheduler"]
    volumes = {v["name"]: v for v in pod["spec"]["template"]["spec"]["volumes"]}
    assert volumes["ssh-host"]["secret"]["secretName"] == "sentinel3-ssh-hostkeys"
    assert volumes["ssh-host"]["secret"]["defaultMode"] == 0o400
    assert volumes["ssh-keys"]["configMap"]["name"] == "sentinel3-ssh-authorized-keys"


def test_a_bad_authorized_key_parameter_is_refused(tmp_path: Path) -> None:
    rendered = environments.render_environment(
        DEV, "interactive", "sentinel3:v0.1.0", resolve=False,
        params={"authorized_keys": "ssh-ed25519 not-base64!"})
    with pytest.raises(UsageError, match="not base64"):
        environments.generated_secrets(None, rendered)


def _user_key(tmp_path: Path, name: str = "id", comment: str = "alice@laptop") -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment,
                    "-f", str(tmp_path / name)], check=True)
    return (tmp_path / f"{name}.pub").read_text().strip()


def test_keys_are_checked_added_once_and_removed_by_fingerprint_or_comment(
        tmp_path: Path) -> None:
    alice, bob = _user_key(tmp_path, "a", "alice@laptop"), _user_key(tmp_path, "b", "bob")
    listed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "a.pub")], check=True,
                            capture_output=True, text=True).stdout.split()[1]
    assert sshkeys.fingerprint(alice) == listed
    keys = sshkeys.with_key(sshkeys.with_key([], alice), bob)
    assert sshkeys.with_key(keys, alice.replace("alice@laptop", "other")) == keys
    kept, removed = sshkeys.without_key(keys, listed)
    assert kept == [bob] and removed == [alice]
    assert sshkeys.without_key(keys, "bob") == ([alice], [bob])
    mislabelled = "ssh-rsa " + base64.b64encode(b"\0\0\0\x0bssh-ed25519").decode()
    for bad in ("hello", "ssh-ed25519", mislabelled):
        with pytest.raises(UsageError):
            sshkeys.check_public_key(bad)


# -- the pump ----------------------------------------------------------------------------

def _echo_server() -> tuple[socket.socket, threading.Thread]:
    """A TCP server that sends back everything, reversed in blocks of 7 bytes' worth."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)
    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


def test_pump_copies_both_ways_through_pipes_with_back_pressure() -> None:
    listener, _ = _echo_server()
    stream = SocketStream(socket.create_connection(listener.getsockname()))
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    payload = os.urandom(8 * 1024 * 1024)
    got = bytearray()

    def feed() -> None:
        os.write(in_w, payload[:1000])
        time.sleep(0.3)  # a quiet moment: the pump must sleep, not spin
        with os.fdopen(in_w, "wb") as fh:
            fh.write(payload[1000:])

    def drain() -> None:
        with os.fdopen(out_r, "rb") as fh:
            while len(got) < len(payload) and (chunk := fh.read1(65536)):
                got.extend(chunk)
                if len(got) < 2 * 1024 * 1024:
                    time.sleep(0.001)  # a slow reader at first

    threads = [threading.Thread(target=feed), threading.Thread(target=drain)]
    for t in threads:
        t.start()
    cpu = time.process_time()
    result: dict[str, Any] = {}

    def run() -> None:
        result["counts"] = pump(stream, in_r, out_w)
    runner = threading.Thread(target=run)
    runner.start()
    threads[1].join(60)
    threads[0].join(60)
    runner.join(60)
    os.close(out_w)
    os.close(in_r)
    assert bytes(got) == payload
    assert result["counts"][0] == len(payload)
    assert time.process_time() - cpu < 5  # no busy loop over the quiet 0.3 s and the copy
    listener.close()


# -- the WebSocket port-forward codec, against a hand-made server end ---------------------

def _server_frame(payload: bytes, opcode: int = 2) -> bytes:
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def _read_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    def exactly(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            buf += sock.recv(n - len(buf))
        return buf
    b0, b1 = exactly(2)
    assert b1 & 0x80, "client frames are masked"
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(exactly(2), "big")
    elif n == 127:
        n = int.from_bytes(exactly(8), "big")
    mask = exactly(4)
    data = exactly(n)
    return b0 & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def _wait_data(pf: PortForward, want: int) -> bytes:
    got = b""
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        data = pf.receive()
        assert data is not None
        got += data
        time.sleep(0.001)
    return got


def test_port_forward_frames_channels_and_masking() -> None:
    ours, theirs = socket.socketpair()
    port = 2222
    prefix = port.to_bytes(2, "little")
    # The server's first message on each channel repeats the port; one frame is split.
    theirs.sendall(_server_frame(b"\x00" + prefix) + _server_frame(b"\x01" + prefix))
    big = os.urandom(70000)
    frame = _server_frame(b"\x00SSH-2.0-OpenSSH_9.2\r\n")
    theirs.sendall(frame[:5])
    pf = PortForward(ours, port)
    assert pf.receive() == b""
    theirs.sendall(frame[5:] + _server_frame(b"\x00" + big) + _server_frame(b"hi", opcode=9))
    assert _wait_data(pf, 22 + len(big)) == b"SSH-2.0-OpenSSH_9.2\r\n" + big
    pf.flush()
    assert _read_client_frame(theirs) == (10, b"hi")  # a ping is answered
    for size in (5, 300, 70000):
        data = os.urandom(size)
        pf.send(data)
        pf.flush()
        assert _read_client_frame(theirs) == (2, b"\x00" + data)
    theirs.sendall(_server_frame(b"\x01error forwarding port 2222: connection refused"))
    with pytest.raises(KubeError, match="connection refused"):
        _wait_data(pf, 1)
    theirs.sendall(_server_frame(b"\x03\xe8", opcode=8))
    assert pf.receive() is None
    pf.close()
    theirs.close()


# -- the WebSocket handshake, against a local server --------------------------------------

def _one_shot_server(answer: Any) -> tuple[str, list[bytes]]:
    """A server that reads one request and sends ``answer(request)``."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            seen.append(data)
            conn.sendall(answer(data))
            time.sleep(0.2)
        listener.close()
    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}", seen


def test_port_forward_handshake_sends_credentials_and_maps_refusals() -> None:
    import hashlib
    import json as jsonlib

    from mmerep.errors import KubeForbidden
    from mmerep.kube import Kube
    from mmerep.portforward import endpoint_of

    def accept(request: bytes) -> bytes:
        key = next(line.split(b": ")[1] for line in request.split(b"\r\n")
                   if line.lower().startswith(b"sec-websocket-key"))
        digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
        return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n"
                b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n"
                + _server_frame(b"\x00" + (2222).to_bytes(2, "little")))

    url, seen = _one_shot_server(accept)
    endpoint = endpoint_of(Kube.from_url(url, token="s3cr3t"))
    pf = PortForward.open(endpoint, "s3", "sentinel3-scheduler-abc", 2222)
    request = seen[0].decode()
    assert request.startswith("GET /api/v1/namespaces/s3/pods/sentinel3-scheduler-abc/"
                              "portforward?ports=2222 HTTP/1.1\r\n")
    assert "Authorization: Bearer s3cr3t\r\n" in request
    assert "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n" in request
    assert pf.receive() == b""  # the port's first message carries no data
    pf.close()

    status = jsonlib.dumps({"kind": "Status", "reason": "Forbidden", "message": (
        'pods "p" is forbidden: User "bob" cannot create resource "pods/portforward" in '
        'API group "" in the namespace "s3"')}).encode()
    url, _ = _one_shot_server(lambda _: b"HTTP/1.1 403 Forbidden\r\nContent-Length: "
                              + str(len(status)).encode() + b"\r\n\r\n" + status)
    with pytest.raises(KubeForbidden, match='cannot create resource "pods/portforward"'):
        PortForward.open(endpoint_of(Kube.from_url(url)), "s3", "p", 2222)


def _websocket_accept(request: bytes) -> bytes:
    import hashlib

    key = next(line.split(b": ")[1] for line in request.split(b"\r\n")
               if line.lower().startswith(b"sec-websocket-key"))
    digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + base64.b64encode(digest)
            + b"\r\n\r\n" + _server_frame(b"\x00" + (2222).to_bytes(2, "little"))
            + _server_frame(b"\x00SSH-2.0-test\r\n"))


def test_the_pod_lookup_and_the_port_forward_share_one_connection() -> None:
    """The proxy's quick path: a chunked JSON answer, then the upgrade on the same
    keep-alive connection (one TCP and TLS handshake, not two)."""
    import json as jsonlib

    from mmerep.kube import Kube
    from mmerep.portforward import RawApi, endpoint_of

    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[bytes] = []

    def serve() -> None:
        conn, _ = listener.accept()
        accepted.append(b"")
        listener.close()
        with conn:
            data = b""
            for answer in ("list", "upgrade"):
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                request, _, data = data.partition(b"\r\n\r\n")
                accepted[0] += request + b"\r\n\r\n"
                if answer == "list":
                    body = jsonlib.dumps({"items": [{"metadata": {"name": "p-1"}}]}).encode()
                    chunks = [body[:10], body[10:]]
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                 + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks)
                                 + b"0\r\n\r\n")
                else:
                    conn.sendall(_websocket_accept(request))
            time.sleep(0.5)
    threading.Thread(target=serve, daemon=True).start()
    endpoint = endpoint_of(Kube.from_url(f"http://127.0.0.1:{listener.getsockname()[1]}",
                                         token="s3cr3t"))
    api = RawApi(endpoint)
    pods = api.request("GET", "/api/v1/namespaces/s3/pods",
                       query={"labelSelector": "app.kubernetes.io/instance=sentinel3"})
    assert pods == {"items": [{"metadata": {"name": "p-1"}}]}
    pf = PortForward.open(endpoint, "s3", "p-1", 2222, api=api)
    assert _wait_data(pf, 14) == b"SSH-2.0-test\r\n"
    pf.close()
    requests = accepted[0].decode().split("\r\n\r\n")
    assert requests[0].startswith("GET /api/v1/namespaces/s3/pods?labelSelector="
                                  "app.kubernetes.io%2Finstance%3Dsentinel3 HTTP/1.1\r\n")
    assert requests[1].startswith("GET /api/v1/namespaces/s3/pods/p-1/portforward?ports=2222 ")
    assert all("Authorization: Bearer s3cr3t" in r for r in requests[:2])


def test_a_refused_lookup_on_the_quick_path_is_the_gateways_error() -> None:
    import json as jsonlib

    from mmerep.errors import KubeForbidden
    from mmerep.kube import Kube
    from mmerep.portforward import RawApi, endpoint_of

    status = jsonlib.dumps({"kind": "Status", "reason": "Forbidden", "message": (
        'pods is forbidden: User "bob" cannot list resource "pods" in API group "" in the '
        'namespace "s3"')}).encode()
    url, _ = _one_shot_server(lambda _: b"HTTP/1.1 403 Forbidden\r\nContent-Length: "
                              + str(len(status)).encode() + b"\r\n\r\n" + status)
    api = RawApi(endpoint_of(Kube.from_url(url)))
    with pytest.raises(KubeForbidden, match='list pods in s3: pods is forbidden: User "bob"'):
        api.request("GET", "/api/v1/namespaces/s3/pods", what="list pods in s3")
    api.close()


def test_the_proxys_short_path_leaves_help_and_unknown_options_to_the_cli() -> None:
    from mmerep.ssh.proxy import main

    assert main(["--help"]) is None
    assert main(["a", "b", "c"]) is None
    out = subprocess.run([__import__("sys").executable, "-m", "mmerep", "ssh", "proxy",
                          "--profiles", "/nonexistent/profiles.yaml", "x-scheduler.a.b", "22"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: profiles file /nonexistent/profiles.yaml does not exist (check the path, or "
        "create it with: mme-rep profile add NAME --namespace NS --registry HOST --project P "
        "--profiles /nonexistent/profiles.yaml)"]


def test_the_proxy_imports_neither_the_kubernetes_client_nor_the_cli_framework(
        tmp_path: Path) -> None:
    """It starts once per SSH connection: what it imports is its start-up time. (The
    kubeconfig is resolved with the client once, then comes from the gateway's cache.)"""
    import sys

    with scripted_server() as (api, script):
        script.answers = [(200, {"items": []}, {})]
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(f"""apiVersion: v1
kind: Config
current-context: c
clusters: [{{name: c, cluster: {{server: "{api}"}}}}]
users: [{{name: u, user: {{token: t0k3n}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
""")
        profiles = tmp_path / "profiles.yaml"
        profiles.write_text(f"profiles:\n  p:\n    context: c\n    kubeconfig: {kubeconfig}\n"
                            "    namespace: n\n    registry: h.example.org\n    project: x\n")
        env = {**os.environ, "MMEREP_CACHE_DIR": str(tmp_path / "cache")}
        cmd = [sys.executable, "-X", "importtime", "-m", "mmerep", "ssh", "proxy",
               "--profiles", str(profiles), "e-scheduler.p.c", "22"]
        runs = []
        for _ in range(3):  # the first run resolves the kubeconfig and the host; keeps both
            out = subprocess.run(cmd, capture_output=True, text=True, env=env)
            assert "error: no environment e in namespace n (profile p)" in out.stderr
            assert out.returncode == 1
            runs.append({line.split("|")[-1].strip() for line in out.stderr.splitlines()
                         if line.startswith("import time:")})
    assert "kubernetes" in runs[0]
    heavy = ("kubernetes", "typer", "rich", "click", "urllib3", "websocket", "jinja2")
    assert not {m for m in runs[1] if m.split(".")[0] in heavy}
    # Later runs neither read the profiles file nor load the gateway or an HTTP library:
    # the remembered route and the cached connection, and the standard library.
    assert not {m for m in runs[2] if m.split(".")[0] in (*heavy, "yaml", "http")}
    assert not {"mmerep.kube", "mmerep.profiles", "mmerep.templates"} & runs[2]


def test_an_unreachable_cluster_is_one_line_from_the_proxy(tmp_path: Path) -> None:
    import sys

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
current-context: c
clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]
users: [{{name: u, user: {{token: t0k3n}}}}]
contexts: [{{name: c, context: {{cluster: c, user: u}}}}]
""")
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(f"profiles:\n  p:\n    context: c\n    kubeconfig: {kubeconfig}\n"
                        "    namespace: n\n    registry: h.example.org\n    project: x\n")
    out = subprocess.run([sys.executable, "-m", "mmerep", "ssh", "proxy", "--profiles",
                          str(profiles), "e-scheduler.p.c", "22"], capture_output=True,
                         text=True, timeout=60,
                         env={**os.environ, "MMEREP_CACHE_DIR": str(tmp_path / "cache")})
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: cannot reach the API server at http://127.0.0.1:{port}"), out.stderr


def test_a_refused_websocket_port_forward_falls_back_to_kubectl(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        ) -> None:
    """An API server that answers the upgrade with 400 (no WebSocket port-forward): the
    connection goes through `kubectl port-forward` instead, and --debug says so. The
    kubectl here is a stand-in that forwards to a local echo server, as the real one would
    after printing its "Forwarding from" line."""
    import logging

    from mmerep.kube import Kube
    from mmerep.portforward import endpoint_of
    from mmerep.profiles import validate
    from mmerep.ssh.hosts import SshHost
    from mmerep.ssh.proxy import Target, open_stream

    listener, _ = _echo_server()
    kubectl = tmp_path / "kubectl"
    kubectl.write_text("#!/bin/sh\necho \"$*\" > \"$0.args\"\n"
                       f"echo 'Forwarding from 127.0.0.1:{listener.getsockname()[1]} -> 2222'"
                       "\nexec sleep 30\n")
    kubectl.chmod(0o755)
    monkeypatch.setenv("MMEREP_KUBECTL", str(kubectl))
    url, _ = _one_shot_server(lambda _: b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    profile = validate("p", {"context": "ctx", "kubeconfig": "/k", "namespace": "s3",
                             "registry": "h.example.org", "project": "x"})
    target = Target(profile, SshHost("sentinel3", "scheduler", "p"), "s3", "pod-1", 2222)
    with caplog.at_level(logging.DEBUG, logger="mmerep.ssh.proxy"):
        stream, proc = open_stream(endpoint_of(Kube.from_url(url)), target)
    try:
        assert "falling back to kubectl port-forward" in caplog.text
        assert (tmp_path / "kubectl.args").read_text().split() == [
            "--kubeconfig", "/k", "--context", "ctx", "-n", "s3", "port-forward", "--address",
            "127.0.0.1", "pod/pod-1", ":2222"]
        stream.send(b"hello")
        stream.flush()
        deadline = time.monotonic() + 10
        got = b""
        while got != b"hello" and time.monotonic() < deadline:
            got += stream.receive() or b""
        assert got == b"hello"
    finally:
        stream.close()
        proc.terminate()
        proc.wait(5)
        listener.close()


def test_a_remembered_route_is_forgotten_when_what_it_was_read_from_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The proxy skips the profiles file only while the file (and the variables that
    choose files) are what the route was resolved from."""
    from mmerep.ssh import routes

    monkeypatch.setenv("MMEREP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles: {p: {namespace: a}}\n")
    host = "e-scheduler.p.c"
    route = routes.Route("p", "a", "/k", "c", "e", "scheduler")
    assert routes.lookup(host, str(profiles)) is None
    routes.save(host, str(profiles), route)
    assert routes.lookup(host, str(profiles)) == route
    assert routes.lookup("f-scheduler.p.c", str(profiles)) is None
    entry = next((tmp_path / "cache" / "ssh-routes").iterdir())
    assert entry.stat().st_mode & 0o077 == 0  # the user's own
    monkeypatch.setenv("KUBECONFIG", "/elsewhere")
    assert routes.lookup(host, str(profiles)) is None
    monkeypatch.delenv("KUBECONFIG")
    assert routes.lookup(host, str(profiles)) == route
    profiles.write_text("profiles: {p: {namespace: b}}\n")  # same size, new content
    os.utime(profiles, ns=(1, 1))
    assert routes.lookup(host, str(profiles)) is None


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 16383, 16384, 16387, 262145])
def test_client_frames_are_masked_with_the_whole_key_at_every_size(size: int) -> None:
    from mmerep.portforward import masked

    data, key = os.urandom(size), os.urandom(4)
    assert bytes(masked(data, key)) == bytes(b ^ key[i % 4] for i, b in enumerate(data))
