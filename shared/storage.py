"""Result objects in S3-compatible storage (AWS S3, MinIO, R2, moto): key layout, tags and metadata.

Keys are built by genpool from the job id (a hex uuid it generated) and the job kind, never from user
text, so nothing a client sends can steer where an object lands.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, urlencode

from genpool.shared.errors import StorageConfigError, StorageUnavailable

if TYPE_CHECKING:
    from genpool.shared.settings import Settings

EXTENSIONS = {"text": ("txt", "text/plain; charset=utf-8"), "chat": ("txt", "text/plain; charset=utf-8"),
              "json": ("json", "application/json"), "image": ("png", "image/png")}
_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_TAG_SAFE = re.compile(r"[^A-Za-z0-9 +\-=._:/@]")
PROBE_PREFIX = "_probe"  # worker start-up and `genpool health` write and delete <prefix>/_probe/<uuid>
# S3 answered, and the answer is about genpool's configuration: no retry can help (StorageConfigError).
#: An object's metadata travels as one header, ``x-amz-meta-genpool: job-id=…&model=…`` (URL-encoded pairs):
#: botocore serialises, signs and sends each header of every put, ~0.15 ms a put for seven of them (#17).
PACKED_METADATA = "genpool"
#: A body smaller than this goes with its headers at once. botocore sends every put's body after an
#: "Expect: 100-continue" handshake (S3's go-ahead first, so that a body S3 would refuse is not sent): for a
#: text answer of a few KiB that is one round trip and ~0.3 ms of CPU a put for nothing (#17). A larger body
#: (an image) still asks first.
EXPECT_CONTINUE_MIN_BYTES = 1024 * 1024
_REFUSED = {"AccessDenied": "S3 refused access to bucket {bucket!r} (AccessDenied): check the credentials' policy "
                            "(RELIABILITY.md lists what the workers need)",
            "InvalidAccessKeyId": "S3 does not know the access key (InvalidAccessKeyId): check AWS_ACCESS_KEY_ID",
            "SignatureDoesNotMatch": "S3 refused the secret key (SignatureDoesNotMatch): check AWS_SECRET_ACCESS_KEY",
            "ExpiredToken": "the S3 session token has expired (ExpiredToken): renew AWS_SESSION_TOKEN",
            "InvalidToken": "S3 refused the session token (InvalidToken): check AWS_SESSION_TOKEN",
            "NoSuchBucket": "S3 bucket {bucket!r} does not exist: create it or set S3_BUCKET",
            "AllAccessDisabled": "S3 refused all access to bucket {bucket!r}: check S3_BUCKET"}


@dataclass(frozen=True)
class StoredObject:
    key: str
    body: bytes
    content_type: str
    tags: Mapping[str, str] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)


class ObjectStore(Protocol):
    bucket: str

    def put(self, obj: StoredObject) -> None: ...

    def exists(self, key: str) -> bool: ...


def object_key(prefix: str, kind: str, job_id: str) -> str:
    """Deterministic key per job: ``<prefix>/<kind>/<id[:2]>/<id>.<ext>``."""
    if not _JOB_ID.match(job_id):
        raise ValueError(f"not a genpool job id: {job_id!r}")
    ext, _ = EXTENSIONS[kind]
    head = f"{prefix}/" if prefix else ""
    return f"{head}{kind}/{job_id[:2]}/{job_id}.{ext}"


def content_type(kind: str) -> str:
    return EXTENSIONS[kind][1]


def tag_value(value: str) -> str:
    """S3 tag values allow letters, digits, spaces and + - = . _ : / @ (max 256)."""
    return _TAG_SAFE.sub("_", value)[:256]


def pack_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """An object's metadata as the one header it is stored in (ASCII whatever the values)."""
    return {PACKED_METADATA: urlencode(metadata)} if metadata else {}


def unpack_metadata(stored: Mapping[str, str]) -> dict[str, str]:
    """An object's metadata as it was given to ``put``: packed, or one header each (objects stored before
    the metadata was packed, which a re-run may still find)."""
    rest = {k: v for k, v in stored.items() if k != PACKED_METADATA}
    packed = stored.get(PACKED_METADATA)
    return rest if packed is None else {**rest, **dict(parse_qsl(packed, keep_blank_values=True))}


def _translate(exc: Exception, bucket: str) -> Exception:
    """botocore's exception as genpool's: a configuration problem (no retry helps) or an outage."""
    from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageConfigError("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (in the "
                                  "environment or .env), or AWS_PROFILE, or run with an instance/container role")
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _REFUSED:
            return StorageConfigError(_REFUSED[code].format(bucket=bucket))
    return StorageUnavailable(f"object store unreachable: {type(exc).__name__}: {exc}")


class S3Store:
    """boto3 client with short timeouts and no retries of its own: genpool's upload retry (worker/results.py)
    is the only one, so a refused upload costs that many PUTs, not that many times botocore's."""

    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self._client = client

    @classmethod
    def from_settings(cls, settings: Settings) -> S3Store:
        from botocore.config import Config

        config = Config(
            connect_timeout=settings.s3_timeout_s, read_timeout=settings.s3_timeout_s,
            retries={"total_max_attempts": 1, "mode": "standard"}, max_pool_connections=max(10, settings.concurrency),
            signature_version="s3v4",
            # CPU per put (#17): genpool builds every parameter itself (typed), so botocore's per-call
            # validation only re-checks them; and botocore >= 1.36 (the floor in pyproject for this option)
            # adds a CRC32 to every put by default, where S3 requires none for PutObject (boto3 before 1.36 sent
            # none either; TLS covers the transfer). Both cost CPU on every put.
            parameter_validation=False, request_checksum_calculation="when_required",
            user_agent=user_agent(),
        )
        client = session(settings).client("s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region,
                                          config=config)
        # This client's own event hook (boto3's documented extension point), after botocore's add_expect_header.
        client.meta.events.register_last("before-call.s3", small_body_at_once, unique_id="genpool-small-body")
        return cls(settings.s3_bucket, client)

    def put(self, obj: StoredObject) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.put_object(
                Bucket=self.bucket, Key=obj.key, Body=obj.body, ContentType=obj.content_type,
                Metadata=pack_metadata(obj.metadata), Tagging=urlencode({k: tag_value(v) for k, v in obj.tags.items()}),
            )
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, self.bucket) from exc

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def head(self, key: str) -> dict[str, str] | None:
        """The object's user metadata, or None when it does not exist."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self._client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise _translate(exc, self.bucket) from exc
        except BotoCoreError as exc:
            raise _translate(exc, self.bucket) from exc
        return unpack_metadata({str(k): str(v) for k, v in reply.get("Metadata", {}).items()})

    def read(self, bucket: str, key: str) -> bytes:
        """An object's body (``genpool result --out``, ``submit --wait``)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return bytes(self._client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise StorageUnavailable(f"s3://{bucket}/{key} does not exist (yet): a result kept in a "
                                         "worker's spool is uploaded when S3 takes it") from exc
            raise _translate(exc, bucket) from exc
        except BotoCoreError as exc:
            raise _translate(exc, bucket) from exc

    def probe(self, prefix: str) -> str:
        """Write, read back and delete a small object: the bucket exists and these credentials may write
        (and delete what they wrote). Raises StorageConfigError / StorageUnavailable; returns the key used."""
        from botocore.exceptions import BotoCoreError, ClientError

        key = f"{prefix}/{PROBE_PREFIX}/{uuid.uuid4().hex}" if prefix else f"{PROBE_PREFIX}/{uuid.uuid4().hex}"
        self.put(StoredObject(key=key, body=b"probe", content_type="text/plain"))
        try:
            body = self.read(self.bucket, key)
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _translate(exc, self.bucket) from exc
        if body != b"probe":
            raise StorageUnavailable(f"the probe object {key} read back differently")
        return key

    def ensure_bucket(self) -> None:
        """Create the bucket if it is missing (local servers, first runs)."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._client.head_bucket(Bucket=self.bucket)
        except ClientError:
            self._client.create_bucket(Bucket=self.bucket)
        except BotoCoreError as exc:
            raise _translate(exc, self.bucket) from exc

    @property
    def client(self) -> Any:
        return self._client


def user_agent() -> str:
    """The S3 client's one User-Agent (boto3's session appends ``Botocore/<version>``): genpool and the versions
    botocore's own names, without its per-request feature codes. botocore otherwise rebuilds its User-Agent
    twice a request (~0.15 ms, 7 % of a put: #17)."""
    import platform

    import boto3

    return f"genpool Boto3/{boto3.__version__} Python/{platform.python_version()}"


def small_body_at_once(params: dict[str, Any], **_: Any) -> None:
    """botocore ``before-call.s3`` handler: no "Expect: 100-continue" for a body under
    EXPECT_CONTINUE_MIN_BYTES (its size known)."""
    from botocore.utils import determine_content_length

    headers = params.get("headers") or {}
    if headers.get("Expect") == "100-continue":
        size = determine_content_length(params.get("body"))
        if size is not None and size < EXPECT_CONTINUE_MIN_BYTES:
            del headers["Expect"]


def session(settings: Settings) -> Any:
    """A boto3 session with the credentials Settings holds (environment or env file), else boto3's chain."""
    import boto3

    if settings.aws_access_key_id:
        return boto3.session.Session(
            aws_access_key_id=settings.aws_access_key_id,
            aws_secret_access_key=settings.aws_secret_access_key.reveal(),
            aws_session_token=settings.aws_session_token.reveal() or None, region_name=settings.aws_region)
    return boto3.session.Session(profile_name=settings.aws_profile, region_name=settings.aws_region)
