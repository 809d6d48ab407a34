"""A real registry for tests and benchmarks: Debian's docker-registry (CNCF distribution 2.8)
on 127.0.0.1 with a free port, a temporary storage directory and a config of its own; plain,
with htpasswd (bcrypt) basic auth, or with token auth served by a tiny token server here
(JWTs signed RS256 by openssl with a throw-away key whose self-signed certificate is the
registry's root bundle). Everything is stopped and removed by `close()`.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

REGISTRY = "/usr/bin/docker-registry"
USER, PASSWORD = "alice", "s3cret-pw"
SERVICE, ISSUER = "lamina-test-registry", "lamina-test-tokens"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningRegistry:
    """A registry process; `host` is what references name (127.0.0.1:PORT)."""

    host: str
    directory: Path
    process: subprocess.Popen
    extra: list[Any] = field(default_factory=list)  # servers to shut down too

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for server in self.extra:
            server.shutdown()
            server.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RunningRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_registry(directory: Path, auth: str = "none") -> RunningRegistry:
    """auth: "none", "basic" (htpasswd) or "token" (a token server in this process)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    extra: list[Any] = []
    lines = ["version: 0.1", "log:", "  level: error", "  accesslog:", "    disabled: true",
             "storage:", "  filesystem:", f"    rootdirectory: {directory / 'data'}",
             "  delete:", "    enabled: true", "http:", f"  addr: 127.0.0.1:{port}",
             "  secret: lamina-test-secret", "health:", "  storagedriver:",
             "    enabled: false"]
    if auth == "basic":
        htpasswd = directory / "htpasswd"
        out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                             capture_output=True, text=True).stdout
        htpasswd.write_text(out)
        lines += ["auth:", "  htpasswd:", "    realm: lamina-test", f"    path: {htpasswd}"]
    elif auth == "token":
        server = TokenServer(directory)
        extra.append(server.httpd)
        lines += ["auth:", "  token:", f"    realm: {server.realm}", f"    service: {SERVICE}",
                  f"    issuer: {ISSUER}", f"    rootcertbundle: {server.cert}"]
    config = directory / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = open(directory / "registry.log", "wb")  # noqa: SIM115 - the process keeps it
    proc = subprocess.Popen([REGISTRY, "serve", str(config)], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    log.close()
    reg = RunningRegistry(f"127.0.0.1:{port}", directory, proc, extra)
    _wait_up(reg)
    return reg


def _wait_up(reg: RunningRegistry) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if reg.process.poll() is not None:
            text = (reg.directory / "registry.log").read_text(errors="replace")
            raise RuntimeError(f"docker-registry exited: {text[-2000:]}")
        try:
            urllib.request.urlopen(f"http://{reg.host}/v2/", timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # 401: up, and asking for credentials
        except OSError:
            time.sleep(0.05)
    reg.close()
    raise RuntimeError("docker-registry did not start in 15 s")


# --- token auth ------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues tokens as docker's token spec says: with the right basic credentials, every
    action asked for; anonymously, `pull` on repositories under `public/` only."""

    def __init__(self, directory: Path) -> None:
        self.key, self.cert = directory / "token.key", directory / "token.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "1", "-subj", "/CN=lamina test tokens", "-keyout", str(self.key),
                        "-out", str(self.cert)], check=True, capture_output=True)
        pem = self.cert.read_text().split("-----")[2]
        self.x5c = "".join(pem.split())
        self.requests: list[dict[str, Any]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.realm = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}." \
                        f"{_b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), capture_output=True,
                             check=True).stdout
        return f"{signing_input}.{_b64url(sig)}"

    def grant(self, scopes: list[str], user: str | None) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            wanted = [a for a in actions.split(",") if a]
            if user is None:
                wanted = [a for a in wanted if a == "pull"] if name.startswith("public/") else []
            if kind == "repository" and wanted:
                access.append({"type": "repository", "name": name, "actions": wanted})
        return access

    def _handler(self) -> Callable[..., BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                query = parse_qs(urlsplit(self.path).query)
                user = None
                header = self.headers.get("Authorization", "")
                if header.startswith("Basic "):
                    name, _, pw = base64.b64decode(header[6:]).decode().partition(":")
                    if (name, pw) != (USER, PASSWORD):
                        self._answer(401, {"errors": [{"code": "UNAUTHORIZED",
                                                       "message": "bad credentials"}]})
                        return
                    user = name
                server.requests.append({"user": user, "scope": query.get("scope", [])})
                now = int(time.time())
                claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "iat": now,
                          "nbf": now - 10, "exp": now + 300, "jti": os.urandom(8).hex(),
                          "access": server.grant(query.get("scope", []), user)}
                self._answer(200, {"token": server.sign(claims), "expires_in": 300})

            def _answer(self, status: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
