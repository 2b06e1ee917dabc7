"""The type, limits and help text of each `build-dataset` parameter, written once as an
`Annotated` alias (and the defaults they share). `BuildParameters` (flows/params.py) and the
flow's signature (flows/build.py) both use them, so the Prefect UI's form, the server-side
checks and `recflow build --help` always agree. Imports pydantic only.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from recordio_core.building.plan import DEFAULT_RECORDS_PER_SHARD, MIN_SHARD_BYTES

# --- one alias per parameter: type, limits, and the text the UI shows -------------------------
Source = Annotated[
    str,
    Field(
        min_length=1,
        description="Image folder: a local path or any fsspec URL (s3://bucket/prefix). "
        "Class folders below it become labels (im2rec's --recursive).",
    ),
]
Output = Annotated[
    str,
    Field(
        min_length=1,
        description="Dataset folder (local path or fsspec URL). Gets the shards per split, "
        "class_map.json, rejects.jsonl and manifest.json (written last).",
    ),
]
Lst = Annotated[
    str | None,
    Field(
        description="Optional: an existing .lst to pack instead of listing SOURCE (paths in it "
        "are relative to SOURCE; its label columns must match label_width).",
    ),
]
Recursive = Annotated[
    bool, Field(description="Walk sub-folders; each folder holding images is a class.")
]
AllowOutsideRoot = Annotated[
    bool,
    Field(
        description="With lst: accept paths that point outside SOURCE ('..', absolute paths, "
        "other URLs); refused by default.",
    ),
]
Exts = Annotated[
    list[str],
    Field(min_length=1, description="File extensions that count as images."),
]
SplitMethod = Annotated[
    Literal["stable", "im2rec"],
    Field(
        description="stable: the split of an image is fixed by a hash of its path, so adding "
        "images never moves others; im2rec: im2rec.py's seeded shuffle and cut.",
    ),
]
Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
TrainRatio = Annotated[Ratio, Field(description="Fraction for train (1.0: one list, no split).")]
TestRatio = Annotated[Ratio, Field(description="Fraction for test; val gets the rest.")]
Shuffle = Annotated[bool, Field(description="im2rec method: shuffle before cutting.")]
Seed = Annotated[
    int,
    Field(
        description="Seed of the record order: im2rec method, the shuffle's (im2rec uses 100); "
        "stable method, the hash of record_order='hash'.",
    ),
]
Chunks = Annotated[int, Field(ge=1, le=1024, description="im2rec method: number of chunks.")]
SplitSalt = Annotated[str, Field(description="stable method: salt mixed into the path hash.")]
RecordOrder = Annotated[
    Literal["hash", "listing"],
    Field(
        description="stable method: the order of records inside each split. hash: sorted by a "
        "seeded hash of each path, so any run of records mixes the classes and adding images "
        "never reorders the others; listing: as listed (class folder after class folder) or "
        "as in the .lst, what earlier versions wrote. The im2rec method shuffles as im2rec.py "
        "does (shuffle, seed).",
    ),
]
Resize = Annotated[
    int,
    Field(ge=0, le=65535, description="Shorter side becomes this many pixels (0: keep size)."),
]
CenterCrop = Annotated[bool, Field(description="Crop the center square before resizing.")]
Color = Annotated[
    Literal[-1, 0, 1], Field(description="1: colour (3 channels), 0: gray, -1: as stored.")
]
Encoding = Annotated[Literal[".jpg", ".png"], Field(description="Encoding of packed images.")]
Quality = Annotated[
    int, Field(ge=0, le=100, description="JPEG quality 0-100, or PNG compression 0-9.")
]
PassThrough = Annotated[
    bool, Field(description="Store each file's bytes untouched (no decode, resize or encode).")
]
InterMethod = Annotated[
    Literal[0, 1, 2, 3, 4, 9, 10],
    Field(
        description="Resize filter as in im2rec.cc: 0 nearest, 1 bilinear, 2 cubic, 3 area, "
        "4 lanczos, 9 auto, 10 one of 0-4 per image (reproducible).",
    ),
]
Verify = Annotated[
    Literal["none", "header", "decode"],
    Field(
        description="pass_through only: none stores any bytes; header rejects files that are "
        "not images (reads the header); decode also decodes each image.",
    ),
]
MaxPixels = Annotated[
    int | None,
    Field(
        ge=1,
        description="Reject images with more pixels (decompression bombs); empty: no limit.",
    ),
]
ReducingGap = Annotated[
    float | None,
    Field(
        ge=1.0,
        description="Decode JPEGs at 1/2, 1/4 or 1/8 scale while at least this many times the "
        "output size (faster); empty: always decode at full size.",
    ),
]
LabelWidth = Annotated[
    int,
    Field(
        ge=1,
        le=4096,
        description="Number of label columns per .lst entry (im2rec.cc); above 1 every record's "
        "header holds all of them, unless pack_label is false.",
    ),
]
PackLabel = Annotated[
    bool | None,
    Field(
        description="Store all label_width labels in each record's header, where MXNet's "
        "ImageRecordIter(label_width=N) and DALI read them without the .lst. "
        "None (the default): yes when label_width > 1; false keeps only the first label in "
        "the header.",
    ),
]
MAX_SHARDS = 256  # per run: keeps a run to a few hundred task runs (pack + validate per shard)
# per streaming run, whose task runs pack groups of shards (`flows/build_stream.py`): 2,000
# images per shard up to 200 M images
MAX_STREAM_SHARDS = 100_000
RecordsPerShard = Annotated[
    int | None,
    Field(
        ge=1,
        description="Images per shard; empty (the default): "
        f"{DEFAULT_RECORDS_PER_SHARD}, or more for small files so that a shard holds at least "
        f"{MIN_SHARD_BYTES >> 20} MiB of images. Raised automatically so a run has at most "
        f"{MAX_SHARDS} shards.",
    ),
]
NumWorkers = Annotated[
    int,
    Field(
        ge=0,
        le=256,
        description="Worker processes per shard task (threads inside a daemonic Dask worker); "
        "0: the CPUs shared among the shards packed at once.",
    ),
]
IoConcurrency = Annotated[
    int,
    Field(
        ge=1,
        le=1024,
        description="Requests in flight per shard task when reading images from an object "
        "store (S3); the connection pool is raised to match. Local sources ignore it.",
    ),
]
RejectPolicy = Annotated[
    Literal["skip", "fail"],
    Field(description="skip: leave bad images out and record them; fail: any reject fails."),
]
MaxRejectFraction = Annotated[
    Ratio, Field(description="Fail when more than this fraction of the images is rejected.")
]
ValidateDecode = Annotated[
    bool, Field(description="Validation also decodes every image (slower, stricter).")
]
OnDecodeWarning = Annotated[
    Literal["keep", "reject"],
    Field(
        description="A JPEG that decodes only with libjpeg warnings (corrupt but decodable: "
        "scrambled or truncated data): keep packs it and lists it under warnings in the "
        "manifest; reject also leaves it out as a reject.",
    ),
]
Dedupe = Annotated[
    Literal["none", "drop"],
    Field(
        description="Byte-identical source files: none packs every copy (they are reported "
        "under duplicates); drop keeps the first path in sorted order and rejects the others "
        "as 'duplicate of ...' (reads same-size files once more before packing).",
    ),
]
NearDuplicateDistance = Annotated[
    int | None,
    Field(
        ge=0,
        le=5,
        description="Report near-duplicates (re-encoded or resized copies): images whose "
        "64-bit difference hashes differ in at most this many bits (3 is a good start; costs "
        "about 5 percent more CPU); empty: off. Pass-through hashes only with verify=decode.",
    ),
]
DryRun = Annotated[
    bool,
    Field(
        description="List, split and plan, decode a small sample to estimate size and time, "
        "report records per split and class and the shards it would write; writes nothing "
        "to OUTPUT.",
    ),
]
Streaming = Annotated[
    bool,
    Field(
        description="For millions of images: list the source in parts as tasks (on the Dask "
        "workers with dask_address), pack groups of shards per task, and keep only per-shard "
        "state in the flow process (README, 'Scale'). The same shards and bytes as without. "
        "Lists a folder source, or the lst, in parts. Needs split_method 'stable' and "
        "record_order 'hash'; dry_run plans without decoding a sample.",
    ),
]
StorageOptionsParam = Annotated[
    dict[str, Any] | None,
    Field(
        description='fsspec options for OUTPUT (and SOURCE), e.g. {"endpoint_url": ...}. '
        "No credentials: they come from the environment, AWS config or fsspec config.",
    ),
]
SourceStorageOptionsParam = Annotated[
    dict[str, Any] | None,
    Field(description="fsspec options for SOURCE when they differ from storage_options."),
]
CredentialsBlockParam = Annotated[
    str | None,
    Field(
        description="Credentials for OUTPUT (and SOURCE) from a saved Prefect block, named "
        "TYPE/NAME: aws-credentials/NAME, minio-credentials/NAME or s3-bucket/NAME "
        "(prefect-aws). Loaded where the files are read and written; only the name is stored.",
    ),
]
SourceCredentialsBlockParam = Annotated[
    str | None,
    Field(description="Credentials block for SOURCE when it differs from credentials_block."),
]

DaskAddress = Annotated[
    str | None,
    Field(
        description="Run the tasks on this Dask scheduler (tcp://host:8786) with prefect-dask; "
        "its workers need this project installed and PREFECT_API_URL set.",
    ),
]

DEFAULT_EXTS = [".jpeg", ".jpg", ".png"]
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default limit (recordio_core.images.image)
# None: JPEGs decoded at full size, MXNet's pixels (2.0 until 2026-12-07: ~4 % less CPU, but
# photos shrunk 4x or more then differ from im2rec.py's by up to ~10 levels)
DEFAULT_REDUCING_GAP: float | None = None
DEFAULT_IO_CONCURRENCY = 64  # recordio_core.storage.fetch.DEFAULT_IO_CONCURRENCY
# Off by default: the difference hash costs ~5 % of the packing CPU (the sha256 of the bytes,
# always on, ~2 %); 3 is the suggested value (re-encoded/resized copies land within 2-3 bits).
DEFAULT_NEAR_DUPLICATE_DISTANCE: int | None = None
