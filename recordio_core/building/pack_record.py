"""One image -> one record, and what the workers learn about the image on the way.

`_process` reads an image (`recordio_core.building.pack_source`); `_transform` turns its bytes into
the image to store (`recordio_core.images.image.transform_image_checked`: decode, colour, crop,
resize, encode, or pass-through) with its facts (sha256 of the source bytes, libjpeg warning,
difference hash), or gives the reason it is rejected. `record_payload` puts im2rec's header in
front of the image and `_framed` frames the payload as a RecordIO record. Neither raises for a
bad image; a transient read error is raised, so the shard fails whole.
"""

from __future__ import annotations

import hashlib
import struct

from recordio_core.building.pack_options import PackOptions
from recordio_core.building.pack_source import _is_permanent, _read_reason, _Reader
from recordio_core.building.quality import NO_DHASH, NO_DIGEST
from recordio_core.format.framing import frame_record
from recordio_core.format.lst import LstEntry
from recordio_core.format.recordio import IRHeader, pack
from recordio_core.images.image import ImageError, transform_image_checked


def record_payload(entry: LstEntry, image_bytes: bytes, opts: PackOptions) -> bytes:
    """The record payload im2rec.py writes for `entry`: `IRHeader(0, label, index, 0)` with the
    first label as a float32, or, with `pack_label` and more than one label, all labels as a
    float32 array after the header (flag = their count, header label 0)."""
    if opts.pack_label and len(entry.labels) > 1:
        payload = pack(IRHeader(0, list(entry.labels), entry.index, 0), image_bytes)
        if opts.header_label == "first":
            payload = payload[:4] + _F32.pack(entry.labels[0]) + payload[8:]
        return payload
    # what `pack(IRHeader(0, label, index, 0), image_bytes)` gives, without its generality
    return _HEADER_ONE_LABEL.pack(0, float(entry.labels[0]), entry.index, 0) + image_bytes


_F32 = struct.Struct("<f")  # the header's label field, bytes 4..8
_HEADER_ONE_LABEL = struct.Struct("<IfQQ")  # IRHeader: flag, label, id, id2


# What the workers learn about each image besides its record: (sha256 digest of the source
# bytes or NO_DIGEST, libjpeg warning or "", difference hash or NO_DHASH).
_Facts = tuple[bytes, str, int]
_NO_FACTS: _Facts = (NO_DIGEST, "", NO_DHASH)  # an image that could not be read


def _process(
    reader: _Reader, entry: LstEntry, opts: PackOptions
) -> tuple[bytes | None, str, _Facts]:
    """(encoded image, "", facts) or (None, reject reason, facts). Never raises for a bad
    image."""
    try:
        data = reader.read(entry)
    except Exception as exc:
        if _is_permanent(exc):
            return None, _read_reason(exc), _NO_FACTS
        raise  # transient (network, I/O): fail the shard, let the caller retry it
    return _transform(data, opts)


def _transform(data: bytes, opts: PackOptions) -> tuple[bytes | None, str, _Facts]:
    """(encoded image, "", facts) or (None, reject reason, facts) for bytes already read."""
    digest = hashlib.sha256(data).digest()
    try:
        out = transform_image_checked(data, opts.image, dhash=opts.near_duplicates)
    except ImageError as exc:
        return None, str(exc), (digest, "", NO_DHASH)
    except MemoryError:
        return None, "not enough memory to decode the image", (digest, "", NO_DHASH)
    except Exception as exc:  # a Pillow plugin bug must not sink the shard: record it
        reason = f"unexpected {type(exc).__name__} while decoding: {str(exc)[:200]}"
        return None, reason, (digest, "", NO_DHASH)
    facts = (digest, out.warning, NO_DHASH if out.dhash is None else out.dhash)
    if out.warning and opts.on_decode_warning == "reject":
        return None, f"corrupt JPEG data (decoder warning): {out.warning}", facts
    return out.data, "", facts


def _transform_one(
    entry: LstEntry, got: bytes | str, opts: PackOptions
) -> tuple[bytes | None, str, _Facts]:
    """(framed record, "", facts) or (None, reason, facts) for fetched bytes or a read reject."""
    if isinstance(got, str):
        return None, got, _NO_FACTS
    data, reason, facts = _transform(got, opts)
    return _framed(entry, data, opts), reason, facts


def _framed(entry: LstEntry, data: bytes | None, opts: PackOptions) -> bytes | None:
    return None if data is None else frame_record(record_payload(entry, data, opts))
