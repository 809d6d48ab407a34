"""The OCI distribution API over HTTP(S), with the standard library's http.client.

Why not requests: every byte of a layer passes through here, and http.client lets a download
be hashed and written in 1 MiB pieces, and an upload be streamed straight from a layer's
tar-split (its size known before the first byte) with no copy in between. One connection per
thread, kept alive; a connection the server closed is opened again once.

Plain HTTP only for a registry on this machine or one named with --insecure-registry;
HTTPS (certificates checked) for every other.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import threading
import weakref
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from adapters.registry.auth import Challenge, Credentials, parse_challenge
from adapters.registry.reference import is_local
from core.errors import BadInput, NotFound

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST, OCI_INDEX, DOCKER_LIST)
CHUNK = 1 << 20
MAX_MANIFEST = 4 << 20  # docker refuses bigger manifests too
_TIMEOUT = 60
_RETRYABLE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
              http.client.CannotSendRequest, http.client.ResponseNotReady)


class RegistryError(BadInput):
    """The registry refused or failed a request; str() is docker's `code: message`."""


class Unauthorized(RegistryError):
    """No or wrong credentials for what was asked."""


class DigestMismatch(RegistryError):
    """What the registry sent is not what its digest says."""


def _error_text(status: int, body: bytes) -> str:
    """docker's form of a registry error body: `manifest unknown: manifest unknown`."""
    try:
        errors = json.loads(body.decode("utf-8")).get("errors") or []
    except (ValueError, UnicodeDecodeError, AttributeError):
        errors = []
    parts = []
    for e in errors if isinstance(errors, list) else []:
        if isinstance(e, dict):
            code = str(e.get("code") or "").lower().replace("_", " ")
            parts.append(f"{code}: {e.get('message') or ''}".strip(": "))
    if not parts and status == 401:  # a HEAD's 401 has no body to say it
        return "unauthorized: authentication required"
    return "; ".join(parts) or f"HTTP {status} {http.client.responses.get(status, '')}".strip()


class Client:
    """One repository of one registry, with the actions (pull, push) it will need tokens for."""

    def __init__(self, host: str, repository: str, creds: Credentials | None = None, *,
                 insecure: bool = False, actions: Iterable[str] = ("pull",),
                 extra_scopes: Iterable[str] = ()) -> None:
        self.host, self.repository, self.creds = host, repository, creds
        self.scheme = "http" if insecure or is_local(host) else "https"
        own = [f"repository:{repository}:{','.join(actions)}"] if repository else []
        self.scopes = [*own, *extra_scopes]
        self._auth: str | None = None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._sockets: weakref.WeakSet[Any] = weakref.WeakSet()  # every socket opened

    # --- connections and requests -------------------------------------------------------

    def _connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None or fresh:
            if conn is not None:
                conn.close()
            conn = _connect(self.scheme, self.host, self._sockets)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def abort(self) -> None:
        """Shut every thread's connection down (from another thread): a read blocked on a
        stalled server returns at once, so an interrupted pull stops now, not at a timeout."""
        import socket

        for sock in list(self._sockets):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _send(self, method: str, path: str, headers: dict[str, str],
              body: bytes | None) -> http.client.HTTPResponse:
        for attempt in (0, 1):
            conn = self._connection(fresh=attempt > 0)
            try:
                conn.request(method, path, body=body, headers=headers)
                return conn.getresponse()
            except _RETRYABLE:
                if attempt:
                    raise
            except OSError as err:
                raise RegistryError(f"cannot reach registry {self.host}: "
                                    f"{err.strerror or err}") from None
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, *, headers: dict[str, str] | None = None,
                body: bytes | None = None, ok: Iterable[int] = (200,),
                what: str = "", missing: str = "") -> http.client.HTTPResponse:
        """A request with auth (a 401 answered once by the challenge's scheme); a status
        not in `ok` raises with the registry's error text (a 404 prefixed with `missing` if
        given). The caller reads the body."""
        for attempt in (0, 1):
            sent = dict(headers or {})
            if self._auth:
                sent["Authorization"] = self._auth
            resp = self._send(method, path, sent, body)
            if resp.status == 401 and attempt == 0:
                challenge = parse_challenge(resp.getheader("WWW-Authenticate") or "")
                resp.read()
                self._authenticate(challenge)
                continue
            break
        if resp.status not in tuple(ok):
            text = _error_text(resp.status, resp.read())
            if resp.status in (401, 403):
                hint = "" if self.creds else f" (lamina login {self.host})"
                raise Unauthorized(f"{what or path}: {text}{hint}")
            if resp.status == 404:
                raise NotFound(f"{missing or what or path}: {text}")
            raise RegistryError(f"{what or path}: {text}")
        return resp

    # --- auth ----------------------------------------------------------------------------

    def _authenticate(self, challenge: Challenge | None) -> None:
        if challenge is None:
            raise Unauthorized(f"{self.host}: authentication required, and no challenge given")
        if challenge.scheme == "basic":
            if self.creds is None:
                raise Unauthorized(f"{self.host}: authentication required "
                                   f"(lamina login {self.host})")
            with self._lock:
                self._auth = self.creds.basic()
            return
        if challenge.scheme != "bearer" or not challenge.params.get("realm"):
            raise Unauthorized(f"{self.host}: unsupported authentication {challenge.scheme!r}")
        token = self._token(challenge.params)
        with self._lock:
            self._auth = f"Bearer {token}"

    def _token(self, params: dict[str, str]) -> str:
        """A bearer token from the realm: anonymous, or for the stored credentials."""
        scopes = list(self.scopes)
        if params.get("scope") and params["scope"] not in scopes:
            scopes.append(params["scope"])
        query = [("scope", s) for s in scopes]
        if params.get("service"):
            query.insert(0, ("service", params["service"]))
        headers = {}
        if self.creds is not None:
            query.append(("account", self.creds.username))
            headers["Authorization"] = self.creds.basic()
        realm = urlsplit(params["realm"])
        if realm.scheme not in ("http", "https") or not realm.netloc:
            raise Unauthorized(f"{self.host}: bad token realm {params['realm']!r}")
        if realm.scheme == "http" and not is_local(realm.netloc) and self.scheme == "https":
            raise Unauthorized(f"{self.host}: refusing a token realm over plain HTTP")
        path = (realm.path or "/") + ("&" if realm.query else "?") + \
            (realm.query + "&" if realm.query else "") + urlencode(query)
        conn = _connect(realm.scheme, realm.netloc)
        try:
            conn.request("GET", path, headers=headers)
            resp = conn.getresponse()
            body = resp.read(MAX_MANIFEST)
        except OSError as err:
            raise RegistryError(f"cannot reach the token server {realm.netloc}: "
                                f"{err.strerror or err}") from None
        finally:
            conn.close()
        if resp.status != 200:
            raise Unauthorized(f"{self.host}: token server said "
                               f"{_error_text(resp.status, body)}")
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise Unauthorized(f"{self.host}: the token server gave no token")
        return token

    def ping(self) -> None:
        """GET /v2/: checks the registry is there and the credentials are good."""
        self.request("GET", "/v2/", what=self.host).read()

    # --- manifests -----------------------------------------------------------------------

    def _repo_path(self, tail: str) -> str:
        return f"/v2/{quote(self.repository)}/{tail}"

    def get_manifest(self, ref: str, what: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index; the digest is checked."""
        resp = self.request("GET", self._repo_path(f"manifests/{ref}"),
                            headers={"Accept": ", ".join(MANIFEST_TYPES)}, what=what,
                            missing=f"manifest for {what} not found")
        body = resp.read(MAX_MANIFEST + 1)
        if len(body) > MAX_MANIFEST:
            resp.close()
            self.close()
            raise RegistryError(f"{what}: the manifest is bigger than {MAX_MANIFEST} bytes")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        claimed = resp.getheader("Docker-Content-Digest")
        if ref.startswith("sha256:") and digest != ref:
            raise DigestMismatch(f"{what}: manifest digest mismatch: got {digest}")
        if claimed and claimed.startswith("sha256:") and claimed != digest:
            raise DigestMismatch(f"{what}: manifest digest mismatch: the registry says "
                                 f"{claimed}, the bytes are {digest}")
        media = (resp.getheader("Content-Type") or "").split(";")[0].strip()
        return body, media, digest

    def put_manifest(self, ref: str, body: bytes, media_type: str) -> str:
        resp = self.request("PUT", self._repo_path(f"manifests/{ref}"),
                            headers={"Content-Type": media_type}, body=body, ok=(201, 200),
                            what=f"manifest {ref}")
        resp.read()
        return resp.getheader("Docker-Content-Digest") or \
            "sha256:" + hashlib.sha256(body).hexdigest()

    # --- blobs ---------------------------------------------------------------------------

    def blob_bytes(self, digest: str, limit: int = MAX_MANIFEST * 4) -> bytes:
        """A small blob (a config) in memory, checked against its digest."""
        resp = self._blob_response(digest)
        body = resp.read(limit + 1)
        if len(body) > limit:
            self.close()
            raise RegistryError(f"blob {digest} is bigger than {limit} bytes")
        if "sha256:" + hashlib.sha256(body).hexdigest() != digest:
            raise DigestMismatch(f"blob {digest}: digest mismatch (the registry sent other "
                                 "bytes)")
        return body

    def open_blob(self, digest: str, size: int,
                  progress: Callable[[int], None] = lambda n: None,
                  hashed: bool = True) -> BlobReader:
        """A blob as a stream that hashes what is read; its `verify()` (after the last byte
        was read) raises unless exactly `size` bytes with that digest came. `hashed=False`
        is for a reader whose consumer hashes every byte itself against the same digest
        (an uncompressed layer, whose digest is its diff_id)."""
        return BlobReader(self, self._blob_response(digest), digest, size, progress, hashed)

    def _blob_response(self, digest: str) -> http.client.HTTPResponse:
        resp = self.request("GET", self._repo_path(f"blobs/{digest}"),
                            ok=(200, 301, 302, 303, 307, 308), what=f"blob {digest}")
        if resp.status == 200:
            return resp
        location = resp.getheader("Location") or ""
        resp.read()
        return self._redirected(location, digest)

    def _redirected(self, location: str, digest: str) -> http.client.HTTPResponse:
        """A blob served elsewhere (object storage): fetched without our credentials."""
        url = urlsplit(location)
        if url.scheme not in ("http", "https"):
            raise RegistryError(f"blob {digest}: bad redirect {location!r}")
        if url.scheme == "http" and self.scheme == "https":
            raise RegistryError(f"blob {digest}: refusing a redirect to plain HTTP")
        conn = _connect(url.scheme, url.netloc, self._sockets)
        self._local.extra = conn
        conn.request("GET", url.path + (f"?{url.query}" if url.query else ""))
        resp = conn.getresponse()
        if resp.status != 200:
            raise RegistryError(f"blob {digest}: {_error_text(resp.status, resp.read())}")
        return resp

    def blob_exists(self, digest: str) -> bool:
        resp = self.request("HEAD", self._repo_path(f"blobs/{digest}"), ok=(200, 404),
                            what=f"blob {digest}")
        resp.read()
        return resp.status == 200

    def start_upload(self, digest: str, mount_from: str | None) -> str | None:
        """POST an upload; with `mount_from`, ask for a cross-repository mount first.
        None if the blob was mounted, else the upload's location."""
        query = f"?mount={digest}&from={quote(mount_from)}" if mount_from else ""
        resp = self.request("POST", self._repo_path(f"blobs/uploads/{query}"),
                            ok=(201, 202), what=f"upload of {digest}")
        resp.read()
        if resp.status == 201:
            return None
        return self._location(resp, digest)

    def _location(self, resp: http.client.HTTPResponse, digest: str) -> str:
        location = resp.getheader("Location")
        if not location:
            raise RegistryError(f"upload of {digest}: the registry gave no Location")
        url = urlsplit(location)
        if url.netloc and url.netloc != self.host:
            raise RegistryError(f"upload of {digest}: the registry sent the upload to "
                                f"another host ({url.netloc})")
        return url.path + (f"?{url.query}" if url.query else "")

    def upload_monolithic(self, location: str, digest: str, size: int,
                          write_to: Callable[[Any], None],
                          progress: Callable[[int], None]) -> None:
        """PUT the whole blob in one request, streamed from `write_to`."""
        path = location + ("&" if "?" in location else "?") + f"digest={digest}"
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        resp = self._stream("PUT", path, headers, write_to, size, progress)
        self._finish(resp, (201,), f"upload of {digest}")

    def upload_chunked(self, location: str, digest: str, size: int,
                       write_to: Callable[[Any], None], chunk: int,
                       progress: Callable[[int], None]) -> None:
        """PATCH the blob in pieces of `chunk` bytes, then PUT ?digest= to close it."""
        state = _Upload(location)

        def flush(data: bytes) -> None:
            start = state.sent
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Length": str(len(data)),
                       "Content-Range": f"{start}-{start + len(data) - 1}"}
            resp = self.request("PATCH", state.location, headers=headers, body=data,
                                ok=(202,), what=f"upload of {digest}")
            resp.read()
            state.location = self._location(resp, digest)
            state.sent = start + len(data)
            progress(state.sent)

        sink = _Chunker(chunk, flush)
        write_to(sink)
        sink.close()
        if state.sent != size:
            raise RegistryError(f"upload of {digest}: sent {state.sent} of {size} bytes")
        loc = state.location
        resp = self.request("PUT", loc + ("&" if "?" in loc else "?") + f"digest={digest}",
                            headers={"Content-Length": "0"}, body=b"", ok=(201,),
                            what=f"upload of {digest}")
        resp.read()

    def _stream(self, method: str, path: str, headers: dict[str, str],
                write_to: Callable[[Any], None], size: int,
                progress: Callable[[int], None]) -> http.client.HTTPResponse:
        if self._auth:
            headers["Authorization"] = self._auth
        conn = self._connection()
        try:
            conn.putrequest(method, path)
            for k, v in headers.items():
                conn.putheader(k, v)
            conn.endheaders()
            write_to(_Sender(conn, progress))
            return conn.getresponse()
        except _RETRYABLE as err:
            self.close()
            raise RegistryError(f"{self.host}: the connection broke during an upload: "
                                f"{err}") from None
        except OSError as err:
            self.close()
            raise RegistryError(f"{self.host}: upload failed: {err.strerror or err}") from None

    def _finish(self, resp: http.client.HTTPResponse, ok: tuple[int, ...], what: str) -> None:
        body = resp.read()
        if resp.status not in ok:
            raise RegistryError(f"{what}: {_error_text(resp.status, body)}")


class BlobReader:
    """A blob's bytes as they arrive, hashed and counted; nothing past `size` is read."""

    def __init__(self, client: Client, resp: http.client.HTTPResponse, digest: str,
                 size: int, progress: Callable[[int], None], hashed: bool = True) -> None:
        self.client, self.resp, self.digest, self.size = client, resp, digest, size
        self.progress = progress
        self.hash: Any = hashlib.sha256() if hashed else None
        self.done = self.reported = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        want = self.size + 1 - self.done  # one byte more shows a blob that is too long
        n = want if n is None or n < 0 else min(n, want)
        if n <= 0:
            return b""
        try:
            data = self.resp.read(n)
        except (OSError, http.client.HTTPException) as err:
            self.client.close()
            raise RegistryError(f"blob {self.digest}: the download broke off: {err}") from None
        if self.hash is not None:
            self.hash.update(data)
        self.done += len(data)
        if self.done - self.reported >= CHUNK or not data or self.done >= self.size:
            self.reported = self.done  # progress (and a cancel check) once per MiB
            self.progress(min(self.done, self.size))
        return data

    def verify(self) -> None:
        """Read what is left, then check the size and the digest."""
        while self.read(CHUNK):
            pass
        if self.done != self.size:
            self.client.close()
            raise DigestMismatch(f"blob {self.digest}: expected {self.size} bytes, got "
                                 f"{self.done}" + (" or more" if self.done > self.size else ""))
        if self.hash is not None and "sha256:" + self.hash.hexdigest() != self.digest:
            raise DigestMismatch(f"blob {self.digest}: digest mismatch: the bytes are "
                                 f"sha256:{self.hash.hexdigest()}")


class _Sender:
    """A file-like sink writing to a connection's socket (an upload's body)."""

    def __init__(self, conn: http.client.HTTPConnection,
                 progress: Callable[[int], None]) -> None:
        self.conn, self.progress, self.sent = conn, progress, 0

    def write(self, data: bytes | memoryview) -> int:
        self.conn.send(data)
        self.sent += len(data)
        self.progress(self.sent)
        return len(data)


@dataclass
class _Upload:
    """A chunked upload's place: where the next PATCH goes, and how much has gone."""

    location: str
    sent: int = 0


class _Chunker:
    """A file-like sink that hands on `chunk`-byte pieces (the last one shorter)."""

    def __init__(self, chunk: int, flush: Callable[[bytes], None]) -> None:
        self.chunk, self.flush, self.buf = chunk, flush, bytearray()

    def write(self, data: bytes | memoryview) -> int:
        self.buf += data
        while len(self.buf) >= self.chunk:
            self.flush(bytes(self.buf[:self.chunk]))
            del self.buf[:self.chunk]
        return len(data)

    def close(self) -> None:
        if self.buf:
            self.flush(bytes(self.buf))
            self.buf.clear()


def _connect(scheme: str, netloc: str,
             sockets: weakref.WeakSet[Any] | None = None) -> http.client.HTTPConnection:
    """A connection; with `sockets`, every socket it opens is added there (for abort)."""
    if scheme == "https":
        import ssl

        conn: http.client.HTTPConnection = _Tracked.Secure(
            netloc, timeout=_TIMEOUT, blocksize=CHUNK, context=ssl.create_default_context())
    else:
        conn = _Tracked.Plain(netloc, timeout=_TIMEOUT, blocksize=CHUNK)
    conn.sockets = sockets  # type: ignore[attr-defined]
    return conn


class _Tracked:
    """Connection classes that report each socket they open: a response may hold its
    socket after the connection let go of it (HTTP/1.0, Connection: close)."""

    @staticmethod
    def _connect(conn: Any, base: Any) -> None:
        base.connect(conn)
        if conn.sockets is not None:
            conn.sockets.add(conn.sock)

    class Plain(http.client.HTTPConnection):
        def connect(self) -> None:
            _Tracked._connect(self, http.client.HTTPConnection)

    class Secure(http.client.HTTPSConnection):
        def connect(self) -> None:
            _Tracked._connect(self, http.client.HTTPSConnection)
