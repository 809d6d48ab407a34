"""`/containers/{id}/archive`: what `docker cp` and docker-py's get_archive/put_archive use.

- HEAD: the path stat in the `X-Docker-Container-Path-Stat` header (base64 JSON), no body;
  404 when the container or the path is missing. A query: it records nothing.
- GET: the path as a tar (application/x-tar), the same header in the head; recorded as
  ContainerCopiedFrom once the last byte is produced, and the tar's end is sent after
  the record (streams.HttpWriter). The answer is written by a worker that took the
  connection over (streams.download, as export's), the head with the first bytes, so a
  refusal before them is still docker's error JSON.
- PUT ?path=&noOverwriteDirNonDir=&copyUIDGID=: the body (a tar, plain, gzip, bzip2 or xz),
  spooled to <root>/tmp, extracted into the directory `path`; 200 with no body. 404 for a
  missing container or path, 400 when `path` is not a directory, a mount of it is
  read-only (docker's daemon answers 400 there, its swagger says 403), or the tar is
  refused.

Booleans are docker's httputils.BoolValue: anything but "", 0, no, false and none is true;
noOverwriteDirNonDir counts only when present (docker's default is to allow overwrites).
The engine does the work (core/engine/files.py), each request as the CLI's `cp` does.
"""

from __future__ import annotations

from typing import Any

from adapters.dockerapi import streams
from adapters.dockerapi.http import HttpError, Request, error_body
from adapters.dockerapi.routing import Ctx, capitalized, route, status_for, take_over
from adapters.dockerapi.worker import Report
from core.errors import BadInput

PATH_STAT_HEADER = "X-Docker-Container-Path-Stat"
_NOT_FOUND = {"NotFound", "PathNotFound", "CopyPathNotFound"}
_BAD = {"BadInput", "CopyError", "Ambiguous"}


def _status(kind: str) -> int:
    if kind in _NOT_FOUND:
        return 404
    if kind in _BAD:
        return 400
    return status_for(kind)


def _bool(req: Request, name: str) -> bool:
    value = (req.q(name) or "").strip().lower()
    return value not in ("", "0", "no", "false", "none")


def _path(req: Request) -> str:
    path = req.q("path") or ""
    if not path:
        raise HttpError(400, "bad parameter: path cannot be empty")
    return path


def _header(stat: dict[str, Any]) -> str:
    from adapters.storage.copyio import path_stat_header

    return path_stat_header(stat)


@route("GET", "/containers/(?P<ref>[^/]+)/archive", body="none")
async def get_archive(ctx: Ctx, req: Request, ref: str) -> Any:
    """GET (and HEAD, which the router hands to GET's handler)."""
    if req.method == "HEAD":
        return await _head(ctx, req, ref)
    path = _path(req)
    fd = req.conn.sock.fileno()

    def job(e: Any, _: Any) -> None:
        streams.download(fd, lambda out: e.copy_from(
            ref, path, out, on_stat=lambda stat: out.headers.append(
                (PATH_STAT_HEADER, _header(stat)))), status=_status)

    return await take_over(ctx, req, job)


async def _head(ctx: Ctx, req: Request, ref: str) -> int:
    try:
        path = _path(req)

        def job(e: Any, _: Any) -> dict[str, Any]:
            stat: dict[str, Any] = e.path_stat(ref, path)
            return stat

        report: Report = await ctx.run(req, job)
        if not report.ok:
            raise HttpError(_status(report.kind), capitalized(report.error))
    except HttpError as err:  # a HEAD answer has no body: the status says it
        await req.conn.respond(err.status, error_body(err.message), head=True)
        return err.status
    await req.conn.respond(200, b"", content_type="application/x-tar",
                           extra=[(PATH_STAT_HEADER, _header(report.value))], head=True)
    return 200


@route("PUT", "/containers/(?P<ref>[^/]+)/archive", body="file")
async def put_archive(ctx: Ctx, req: Request, ref: str) -> int:
    path = _path(req)
    body = req.body_path
    no_overwrite = "noOverwriteDirNonDir" in req.query and _bool(req, "noOverwriteDirNonDir")
    copy_uid_gid = _bool(req, "copyUIDGID")

    def job(e: Any, _: Any) -> None:
        if body is None:
            raise BadInput("the request has no body")
        with open(body, "rb") as tar:
            e.copy_to(ref, path, tar, no_overwrite_dir_non_dir=no_overwrite,
                      copy_uid_gid=copy_uid_gid)

    report = await ctx.run(req, job)
    if not report.ok:
        raise HttpError(_status(report.kind), capitalized(report.error))
    await req.conn.respond(200)
    return 200

