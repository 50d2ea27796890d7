"""One place that turns a URL and its options into filesystems.

Every path in the pipelines is an fsspec URL: a local path, `file://`, `s3://`, `gs://`, ...
`Location` carries the URL and its options (picklable, so it travels into Ray tasks) and
hands out the fsspec filesystem, the matching pyarrow filesystem (for Ray Data), and the
small read/write helpers the jobs need.

S3 endpoint, keys and region come from the standard AWS variables or from the options.
s3fs honours `AWS_ENDPOINT_URL`; pyarrow's `S3FileSystem` does not (it would go to
amazonaws.com), so the endpoint is passed on explicitly.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import fsspec
import pyarrow.fs as pafs
from fsspec.implementations.local import LocalFileSystem

from pipelines.common.errors import UserError


def parse_storage_options(text: str | Mapping[str, Any] | None) -> dict[str, Any]:
    """`--storage_options` JSON (or an already-parsed mapping) -> dict for fsspec."""
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return dict(text)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UserError(f"--storage_options is not valid JSON ({err.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise UserError(f"--storage_options must be a JSON object, got {text!r}")
    return value


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _normalise(url: str) -> str:
    """Local paths become absolute (Ray workers run in other directories)."""
    url = url.rstrip("/") if len(url) > 1 else url
    if _is_local(url):
        path = url.removeprefix("file://")
        return os.path.abspath(os.path.expanduser(path))
    return url


@dataclass(frozen=True)
class Location:
    """A URL plus the fsspec options needed to reach it."""

    url: str
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str, options: str | Mapping[str, Any] | None = None) -> Location:
        if not url:
            raise UserError("a storage URL is empty")
        return cls(_normalise(str(url)), parse_storage_options(options))

    # -- naming -------------------------------------------------------------------------
    @property
    def protocol(self) -> str:
        return "file" if _is_local(self.url) else self.url.split("://", 1)[0]

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def path(self) -> str:
        """The path inside the filesystem (no protocol), as fsspec and pyarrow take it."""
        return self.fs._strip_protocol(self.url)

    @property
    def name(self) -> str:
        return posixpath.basename(self.url.rstrip("/"))

    def join(self, *parts: str) -> Location:
        return Location(posixpath.join(self.url, *parts), self.options)

    def relative_to(self, other: Location) -> str:
        """This location's path relative to `other` (which must contain it)."""
        prefix = other.url.rstrip("/") + "/"
        if not self.url.startswith(prefix):
            raise ValueError(f"{self.url} is not under {other.url}")
        return self.url[len(prefix) :]

    # -- filesystems --------------------------------------------------------------------
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        # fsspec caches instances by (class, options), so this is cheap to call often.
        if self.is_local:
            return LocalFileSystem()
        return fsspec.filesystem(self.protocol, **_fsspec_options(self.protocol, self.options))

    @property
    def arrow_fs(self) -> pafs.FileSystem:
        """The pyarrow filesystem for Ray Data readers and writers (paths: `self.path`)."""
        if self.is_local:
            return pafs.LocalFileSystem()
        if self.protocol in ("s3", "s3a"):
            return _arrow_s3(self.options)
        return pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))

    # -- small I/O helpers --------------------------------------------------------------
    def exists(self) -> bool:
        try:
            return self.fs.exists(self.path)
        except PermissionError as err:
            raise UserError(f"no permission to read {self.url}: {err}") from None

    def read_bytes(self) -> bytes:
        try:
            return self.fs.cat_file(self.path)
        except FileNotFoundError:
            raise UserError(f"not found: {self.url}") from None

    def write_bytes(self, data: bytes) -> None:
        """Write a whole object; on local disk atomically (a crash leaves the old file)."""
        with self.open_write() as f:
            f.write(data)

    @contextlib.contextmanager
    def open_write(self) -> Iterator[BinaryIO]:
        """A file to stream a whole object into, which appears whole or not at all.

        On local disk it is written as NAME.tmp-<uuid hex> and renamed over NAME once
        complete (a crash leaves the old file). On an object store it is one upload, made
        on close (a PUT, or a multipart upload for a large one); an error before that
        aborts it, and the old object stays.
        """
        if self.is_local:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            tmp = f"{self.path}.tmp-{uuid.uuid4().hex}"
            try:
                with open(tmp, "wb") as f:
                    yield f
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(tmp)
                raise
            return
        f = self.fs.open(self.path, "wb")
        try:
            yield f
        except BaseException:
            f.discard()
            # Marked closed, so that garbage collection does not close it: that would upload.
            with contextlib.suppress(AttributeError):
                f.closed = True
            raise
        f.close()

    def read_json(self) -> Any:
        return json.loads(self.read_bytes())

    def write_json(self, value: Any) -> None:
        self.write_bytes(json.dumps(value, indent=2, sort_keys=True).encode() + b"\n")

    def check_access(self, flag: str, *, write: bool = False) -> None:
        """Fail now, in one line naming `flag`, the URL and the cause, if this location
        cannot be read (or, with `write`, written): before any work, not from a Ray task."""
        try:
            if write:
                self.makedirs()
                probe = self.join(f".pix2pix-write-check-{uuid.uuid4().hex}")
                probe.write_bytes(b"")
                probe.fs.rm(probe.path)
            else:
                self.exists()
        except UserError as err:
            raise UserError(f"{flag} {self.url}: {err}") from None
        except Exception as err:
            cause = access_problem(err) or f"{type(err).__name__}: {err}"
            action = "cannot write there" if write else "cannot read it"
            raise UserError(f"{flag} {self.url}: {action}: {cause}") from None

    def makedirs(self) -> None:
        """Create the folder (a no-op on object stores, where folders are implicit)."""
        if self.is_local:
            os.makedirs(self.path, exist_ok=True)

    def __str__(self) -> str:
        return self.url


def _endpoint(options: Mapping[str, Any]) -> str | None:
    client_kwargs = options.get("client_kwargs") or {}
    return (
        options.get("endpoint_url")
        or client_kwargs.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )


def _fsspec_options(protocol: str, options: Mapping[str, Any]) -> dict[str, Any]:
    opts = dict(options)
    if protocol in ("s3", "s3a") and "endpoint_url" not in opts:
        endpoint = _endpoint(opts)
        if endpoint:
            opts["endpoint_url"] = endpoint
    return opts


def _arrow_s3(options: Mapping[str, Any]) -> pafs.S3FileSystem:
    endpoint = _endpoint(options)
    kwargs: dict[str, Any] = {
        "region": options.get("region")
        or (options.get("client_kwargs") or {}).get("region_name")
        or os.environ.get("AWS_REGION")
        or os.environ.get("AWS_DEFAULT_REGION")
        or "us-east-1",
    }
    key = options.get("key") or options.get("aws_access_key_id")
    secret = options.get("secret") or options.get("aws_secret_access_key")
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret)
        if options.get("token"):
            kwargs["session_token"] = options["token"]
    if options.get("anon"):
        kwargs["anonymous"] = True
    if endpoint:
        scheme, _, host = endpoint.partition("://")
        kwargs.update(endpoint_override=host or scheme, scheme=scheme if host else "https")
    return pafs.S3FileSystem(**kwargs)


def access_problem(err: BaseException) -> str | None:
    """What a person can fix about a failed storage call (credentials, endpoint, permission),
    or None when `err` is something else."""
    try:  # botocore comes with s3fs; without it there are only local errors to explain
        from botocore import exceptions as boto
    except ImportError:  # no S3 support installed: only local permissions to explain
        boto = None
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if boto and isinstance(err, (boto.NoCredentialsError, boto.PartialCredentialsError)):
            return (
                "no credentials for the object store: set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or give --storage_options "
                '\'{"key": "...", "secret": "..."}\' ({"anon": true} for a public bucket)'
            )
        if boto and isinstance(err, (boto.EndpointConnectionError, boto.ConnectTimeoutError)):
            return (
                f"cannot reach the object store: {err}; check its address (AWS_ENDPOINT_URL, "
                "or endpoint_url in --storage_options)"
            )
        if isinstance(err, PermissionError):
            return f"access denied: {err}; check the credentials and the permissions"
        err = err.__cause__ or err.__context__
    return None
