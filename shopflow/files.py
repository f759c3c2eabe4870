"""The object store client: S3 through boto3 with SigV4 and path-style addressing, one private bucket.

Path-style and SigV4 are not options here: a presigned URL signed virtual-host style or with SigV2 does
not verify on versitygw or SeaweedFS (seaweedfs #2638, #6761), and the local store has no per-bucket
host names. Where objects live is said once, by ``Keys``: an admin's upload lands under ``incoming/``
(never served), what the image agent accepted under ``images/<sku>/<image id>/``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.client import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from shopflow.settings import Settings, ensure_local_secret


class StoreUnavailable(Exception):
    """The object store did not answer (down, refused, timed out): the caller retries or says so."""


def credentials(settings: Settings) -> tuple[str, str]:
    """The store's access key and secret: configured, or generated once into the stack's secrets file."""
    access: SecretStr = settings.object_store_access_key or ensure_local_secret(
        settings.home, "SHOPFLOW_OBJECT_STORE_ACCESS_KEY", 12)
    secret: SecretStr = settings.object_store_secret_key or ensure_local_secret(
        settings.home, "SHOPFLOW_OBJECT_STORE_SECRET_KEY", 30)
    return access.get_secret_value(), secret.get_secret_value()


def s3_client(settings: Settings, timeout_s: float = 10.0) -> Any:
    """A boto3 S3 client for this stack's store (thread-safe: one per process is enough)."""
    access, secret = credentials(settings)
    return boto3.session.Session().client(
        "s3", endpoint_url=settings.object_store_url, region_name=settings.object_store_region,
        aws_access_key_id=access, aws_secret_access_key=secret,
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                      connect_timeout=timeout_s, read_timeout=timeout_s,
                      retries={"max_attempts": 2, "mode": "standard"}))


def ensure_bucket(settings: Settings) -> None:
    """Create the project's bucket unless it exists (private: objects are reached by presigned URLs only)."""
    client = s3_client(settings)
    try:
        client.head_bucket(Bucket=settings.object_store_bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
            raise
        client.create_bucket(Bucket=settings.object_store_bucket)


class Keys:
    """Where each object of the files context lives in the bucket."""

    @staticmethod
    def incoming(upload_id: str) -> str:
        return f"incoming/{upload_id}"

    @staticmethod
    def image_prefix(sku: str, image_id: str) -> str:
        return f"images/{sku}/{image_id}/"

    @staticmethod
    def original(sku: str, image_id: str) -> str:
        """The cleaned original, in its own format (its Content-Type says which)."""
        return f"{Keys.image_prefix(sku, image_id)}original"

    @staticmethod
    def thumbnail(sku: str, image_id: str, size: int) -> str:
        return f"{Keys.image_prefix(sku, image_id)}{size}.jpg"


@dataclass(frozen=True)
class PresignedUpload:
    """A browser-style POST the client sends straight to the store: the form fields carry the signed policy."""

    url: str
    fields: dict[str, str]
    expires_at_ms: int


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str


class ObjectStore:
    """The operations the files context needs, each mapping the store's failures to ``StoreUnavailable``."""

    def __init__(self, settings: Settings, client: Any | None = None):
        self.settings = settings
        self.bucket = settings.object_store_bucket
        self.client = client or s3_client(settings)

    def presign_upload(self, key: str, content_type: str, max_bytes: int) -> PresignedUpload:
        """A POST policy for exactly this key and content type, at most ``max_bytes``: the store enforces it."""
        ttl = self.settings.upload_url_ttl_s
        post = self.client.generate_presigned_post(
            self.bucket, key, Fields={"Content-Type": content_type},
            Conditions=[{"Content-Type": content_type}, ["content-length-range", 1, max_bytes]],
            ExpiresIn=ttl)
        return PresignedUpload(post["url"], dict(post["fields"]), int((time.time() + ttl) * 1000))

    def presign_download(self, key: str, ttl_s: int | None = None) -> str:
        return str(self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=ttl_s or self.settings.download_url_ttl_s))

    def head(self, key: str) -> StoredObject | None:
        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise StoreUnavailable(f"HEAD {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"HEAD {key}: {exc}") from exc
        return StoredObject(key, int(answer["ContentLength"]), answer.get("ContentType", ""))

    def read(self, key: str, max_bytes: int) -> bytes:
        """The object's bytes, never more than ``max_bytes`` + 1 read (the caller refuses what is over)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes=0-{max_bytes}")["Body"]
            return bytes(body.read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(key) from exc
            raise StoreUnavailable(f"GET {key}: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailable(f"GET {key}: {exc}") from exc

    def write(self, key: str, data: bytes, content_type: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"PUT {key}: {exc}") from exc

    def keys(self, prefix: str) -> Iterator[str]:
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield item["Key"]
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"LIST {prefix}: {exc}") from exc

    def delete(self, keys: list[str]) -> None:
        """Delete these keys (a missing key is not an error: deleting twice is deleting once)."""
        try:
            for start in range(0, len(keys), 1000):
                chunk = keys[start:start + 1000]
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailable(f"DELETE {len(keys)} objects: {exc}") from exc

    def delete_prefix(self, prefix: str) -> int:
        keys = list(self.keys(prefix))
        self.delete(keys)
        return len(keys)
