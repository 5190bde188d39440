"""The client of ``logoid query/batch --server URL``: send photos to a running ``logoid serve``, get back the
answer JSON the local path builds. Standard library only, so the command starts fast."""

from __future__ import annotations

import json
import mimetypes
import os
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from logoid.core.errors import ImageError, LogoidError

ENV_SERVER = "LOGOID_SERVER"
ENV_TOKEN = "LOGOID_TOKEN"


class ServerError(LogoidError):
    """The server could not be reached, or refused the request."""


class Client:
    """A ``logoid serve`` at ``url`` (``http://host:port``)."""

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 120.0):
        if "://" not in url:
            url = "http://" + url
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get(ENV_TOKEN)
        self.timeout = timeout

    def identify(self, photo: str | os.PathLike, *, find_all: bool = False, k: int = 5,
                 channels: str = "global,local,text", explain: bool = False) -> dict:
        """The answer JSON of one photo file (its ``path`` is the local path given, as the local CLI says)."""
        path = Path(photo)
        answer = self._post("/v1/identify", [("image", path)], _fields(find_all, k, channels, explain), photo=path)
        answer["path"] = str(photo)
        return answer

    def identify_many(self, photos: list[Path], *, find_all: bool = False, k: int = 5,
                      channels: str = "global,local,text", batch: int = 8) -> list[dict]:
        """Answer JSON per photo, in order, sent ``batch`` at a time; a photo the server cannot read gets an error
        result, as in the local batch."""
        out: list[dict] = []
        for i in range(0, len(photos), batch):
            chunk = photos[i:i + batch]
            res = self._post("/v1/identify/batch", [("images", p) for p in chunk],
                             _fields(find_all, k, channels, False))
            for p, r in zip(chunk, res["results"], strict=True):
                r["path"] = str(p)
                out.append(r)
        return out

    def _post(self, route: str, files: list[tuple[str, Path]], fields: dict, photo: Path | None = None) -> dict:
        body, ctype = _multipart(files, fields)
        headers = {"Content-Type": ctype, "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.url + route, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            err = _error_body(e)
            if photo is not None and e.code in (400, 413, 415):  # the photo itself: the local path's ImageError
                raise ImageError(photo, err.get("message", "").removeprefix(f"{wire_name(photo)}: ") or e.reason,
                                 err.get("hint")) from None
            raise ServerError(f"{self.url} answered {e.code}: {err.get('message') or e.reason}",
                              err.get("hint")) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ServerError(f"cannot reach the logoid server at {self.url} ({reason})",
                              f"start it with `logoid serve`, or drop --server (and unset {ENV_SERVER})") from None


def wire_name(path: Path) -> str:
    """The file name as sent in the form (UTF-8; quotes and line breaks escaped)."""
    return path.name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _fields(find_all: bool, k: int, channels: str, explain: bool) -> dict:
    return {"all": str(bool(find_all)).lower(), "k": str(k), "channels": channels, "explain": str(explain).lower()}


def _error_body(e: urllib.error.HTTPError) -> dict:
    try:
        return json.loads(e.read()).get("error") or {}
    except (ValueError, AttributeError, OSError):
        return {}


def _multipart(files: list[tuple[str, Path]], fields: dict) -> tuple[bytes, str]:
    """A multipart/form-data body: the text fields, then each file (read here; an unreadable file is the local
    path's ImageError)."""
    boundary = "logoid-" + uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, path in files:
        try:
            data = path.read_bytes()
        except IsADirectoryError:
            raise ImageError(path, "a folder, not an image", "pass an image file, or use `logoid batch` for folders") from None
        except FileNotFoundError:
            raise ImageError(path, "no such file", "check the path") from None
        except PermissionError:
            raise ImageError(path, "no permission to read it", "check the file's permissions") from None
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        filename = wire_name(path)
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: {ctype}\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
