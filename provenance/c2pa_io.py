"""Sign PNG, JPEG and WebP with a C2PA manifest, and read manifests back into reports.

Signing is the last step: any re-encode afterwards strips the manifest. Reading never raises for
bad input: malformed or forged manifests come back Invalid, unreadable assets Error, images without
C2PA data Absent. Trust: Valid without anchors, Trusted when the signer chains to one of the given
PEM anchors, Invalid when the asset changed after signing. Remote manifests and OCSP are never
fetched.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import c2pa
import cv2
import numpy as np
from PIL import Image

from provenance.containers import UnsupportedFormat, normalize_mime, read_container, sniff_mime
from provenance.manifest import GenerationFacts, ManifestSpec, build_manifest
from provenance.manifest_report import ManifestReport, absent, failed, report_from_store_json
from provenance.signer import C2paSignerAdapter, Signer, SigningError

STORE_MIME = "application/c2pa"
_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp"}
_PIL_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
_THUMBNAIL_ID = "claim-thumbnail"
_NO_NETWORK = {"remote_manifest_fetch": False, "ocsp_fetch": False}
# c2pa errors that mean the manifest itself is malformed, not the asset.
_MANIFEST_ERRORS = (
    "Assertion",
    "AssertionNotFound",
    "Decoding",
    "Json",
    "Manifest",
    "ResourceNotFound",
    "Signature",
    "Verify",
)


@dataclass(frozen=True)
class SignOptions:
    """The claim thumbnail: its long edge in pixels (None embeds none) and its format.
    ``verify_after_sign``: c2pa reads the signed file back and validates it before returning
    (a signer whose key does not match its certificate fails there); a caller that validates
    the file itself, beside other work, turns it off (see ``check_signed``)."""

    thumbnail_long_edge: int | None = 256
    thumbnail_format: str = "jpeg"
    verify_after_sign: bool = True


@dataclass(frozen=True)
class SignedImage:
    data: bytes
    mime: str
    manifest_id: str
    manifest_bytes: bytes


def sign_image(
    image_bytes: bytes,
    mime: str,
    manifest: GenerationFacts | ManifestSpec,
    signer: Signer,
    options: SignOptions | None = None,
    pixels: Image.Image | None = None,
) -> SignedImage:
    """Embed a signed manifest; ``manifest_bytes`` is the store as served with application/c2pa.

    ``pixels`` (the image the bytes encode, if the caller holds it) spares decoding the bytes
    again for the claim thumbnail.
    """
    mime = normalize_mime(mime)
    options = options or SignOptions()
    thumbnail = claim_thumbnail(image_bytes, pixels, options)
    spec = build_manifest(manifest) if isinstance(manifest, GenerationFacts) else manifest
    definition = dict(spec.definition)
    definition["label"] = spec.label
    title = definition.get("title") or "image"
    definition["title"] = f"{title}.{_EXTENSIONS[mime]}"
    if thumbnail is not None:
        definition["thumbnail"] = {"format": thumbnail[0], "identifier": _THUMBNAIL_ID}

    adapter = C2paSignerAdapter(signer)
    out = io.BytesIO()
    try:
        with c2pa.Context.from_dict(_sign_settings(options)) as context:
            builder = c2pa.Builder(definition, context=context)
            if thumbnail is not None:
                builder.add_resource(_THUMBNAIL_ID, io.BytesIO(thumbnail[1]))
            for ingredient in spec.ingredients:
                builder.add_ingredient(
                    ingredient.definition, ingredient.mime, io.BytesIO(ingredient.data)
                )
            store = builder.sign(adapter.native, mime, io.BytesIO(image_bytes), out)
    except c2pa.C2paError as exc:
        if adapter.error is not None:
            raise SigningError(f"the signer failed: {adapter.error}") from adapter.error
        raise SigningError(f"c2pa could not sign the {mime} image: {exc}") from exc
    finally:
        adapter.close()
    return SignedImage(out.getvalue(), mime, spec.label, store)


def read_manifest(
    image_bytes: bytes,
    mime: str | None = None,
    trust_anchors_pem: str | None = None,
) -> ManifestReport:
    """Read and validate the manifest embedded in an image. Never raises for bad input.

    An image in a format C2PA defines no embedding for (BMP, say: ``mime`` names what the caller
    decoded) is Absent: it cannot carry a manifest, so none was removed or broken."""
    fmt = _reader_format(image_bytes, mime)
    if fmt is None or not _c2pa_reads(fmt):
        seen = _pillow_mime(image_bytes)
        if seen is not None and not _c2pa_reads(seen):
            return absent()
        fmt = seen or fmt
    try:
        reader = c2pa.Reader(fmt, io.BytesIO(image_bytes), context=_read_context(trust_anchors_pem))
        with reader:
            return report_from_store_json(reader.json())
    except c2pa.C2paError.ManifestNotFound:
        if _has_c2pa_container(image_bytes):
            return failed("Invalid", "C2PA data is present but holds no readable manifest")
        return absent()
    except Exception as exc:
        return _classify(exc, _has_c2pa_container(image_bytes))


def check_signed(data: bytes, mime: str, manifest_id: str) -> ManifestReport:
    """Validate a file this process just signed: raises :class:`SigningError` unless its
    manifest reads back intact (Valid or Trusted) and is the one signed."""
    report = read_manifest(data, mime)
    if report.state not in ("Valid", "Trusted") or report.manifest_id != manifest_id:
        problem = ", ".join(report.failure_codes) or report.error or report.state
        raise SigningError(f"the signed {mime} file does not validate: {problem}")
    return report


def read_manifest_store(
    manifest_bytes: bytes,
    trust_anchors_pem: str | None = None,
    asset_bytes: bytes | None = None,
    asset_mime: str | None = None,
) -> ManifestReport:
    """Read a detached store (``application/c2pa``), with the asset it was signed into if given.

    Without the asset, the signature, the assertions and the trust are checked, the hash binding
    to the pixels is not (``asset_checked`` False). With the asset, it must be the signed file
    itself: a store whose asset was re-encoded or stripped no longer matches it.
    """
    try:
        context = _read_context(trust_anchors_pem)
        if asset_bytes is None:
            reader = c2pa.Reader(STORE_MIME, io.BytesIO(manifest_bytes), context=context)
        else:
            fmt = _reader_format(asset_bytes, asset_mime)
            reader = c2pa.Reader(fmt, io.BytesIO(asset_bytes), manifest_bytes, context)
        with reader:
            return report_from_store_json(reader.json(), asset_checked=asset_bytes is not None)
    except c2pa.C2paError.ManifestNotFound:
        return failed("Invalid", "the bytes hold no C2PA manifest store")
    except Exception as exc:
        return _classify(exc, True)


def claim_thumbnail(
    image_bytes: bytes, pixels: Image.Image | None, options: SignOptions
) -> tuple[str, bytes] | None:
    """The claim thumbnail as (media type, bytes), or None when none is wanted.

    Made here rather than by c2pa, which decodes the whole file again to make it (about 35 ms
    for a 1024-px PNG, against a few ms from pixels in hand or a reduced JPEG decode).
    """
    edge = options.thumbnail_long_edge
    if edge is None:
        return None
    fmt = normalize_mime(options.thumbnail_format)
    if pixels is None:
        pixels = Image.open(io.BytesIO(image_bytes))
        pixels.draft("RGB", (edge, edge))  # JPEG: decode straight to a reduced size
    thumb = _reduced(pixels.convert("RGB") if pixels.mode not in ("RGB", "L") else pixels, edge)
    out = io.BytesIO()
    if fmt == "image/png":
        thumb.save(out, "PNG", compress_level=1)
    else:
        thumb.save(out, _PIL_FORMATS[fmt], quality=80)
    return fmt, out.getvalue()


def _reduced(pixels: Image.Image, edge: int) -> Image.Image:
    """``pixels`` scaled to fit ``edge`` (area averaging; about 20x faster than Pillow's
    reducing resize at 512 px), or a copy when they fit already."""
    w, h = pixels.size
    f = edge / max(w, h)
    if f >= 1.0:
        return pixels.copy()
    size = (max(1, round(w * f)), max(1, round(h * f)))
    small = cv2.resize(np.asarray(pixels), size, interpolation=cv2.INTER_AREA)
    return Image.fromarray(small, pixels.mode)


def _sign_settings(options: SignOptions) -> dict[str, Any]:
    # Thumbnails come from claim_thumbnail; c2pa's own generator stays off.
    verify = {**_NO_NETWORK, "verify_after_sign": options.verify_after_sign}
    return {"builder": {"thumbnail": {"enabled": False}}, "verify": verify}


def _read_context(trust_anchors_pem: str | None) -> c2pa.Context:
    # Keyed by process too: a forked worker cannot use its parent's native context.
    return _cached_read_context(os.getpid(), trust_anchors_pem)


@lru_cache(maxsize=16)
def _cached_read_context(_pid: int, trust_anchors_pem: str | None) -> c2pa.Context:
    settings: dict[str, Any] = {"verify": dict(_NO_NETWORK)}
    if trust_anchors_pem and trust_anchors_pem.strip():
        settings["trust"] = {"user_anchors": trust_anchors_pem}
        settings["verify"]["verify_trust"] = True
    return c2pa.Context.from_dict(settings)


def _reader_format(data: bytes, mime: str | None) -> str | None:
    sniffed = sniff_mime(data)
    if sniffed is not None:
        return sniffed
    if mime is None:
        return None
    try:
        return normalize_mime(mime)
    except UnsupportedFormat:
        return mime


@lru_cache(maxsize=64)
def _c2pa_reads(mime: str) -> bool:
    return mime in c2pa.Reader.get_supported_mime_types()


def _pillow_mime(data: bytes) -> str | None:
    """The media type of the image Pillow recognises in ``data`` (its header alone is read)."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            return Image.MIME.get(str(im.format))
    except Exception:
        return None


def _has_c2pa_container(data: bytes) -> bool:
    try:
        return read_container(data).c2pa_present
    except Exception:
        return False


def _classify(exc: Exception, manifest_present: bool) -> ManifestReport:
    kind = type(exc).__name__.lstrip("_").removeprefix("C2pa")
    message = str(exc) or kind
    if isinstance(exc, c2pa.C2paError) and (kind in _MANIFEST_ERRORS or manifest_present):
        return failed("Invalid", f"malformed C2PA manifest: {message}")
    if isinstance(exc, json.JSONDecodeError):
        return failed("Invalid", f"c2pa returned unreadable JSON: {message}")
    return failed("Error", f"cannot read the asset: {message}")
