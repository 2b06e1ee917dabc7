"""The typed parameters of the `build-dataset` flow (what the Prefect UI shows as a form).

Each field's type and limits are written once here, as `Annotated` aliases, and used both by
`BuildParameters` (the whole set, with the cross-field rules) and by the flow's signature in
`flows/build.py` (Prefect builds the UI form and the server-side checks from it). Rules that
involve several fields (ratios adding up to more than 1, PNG compression levels, secrets in
storage options) are checked by `BuildParameters` before any work starts.

This module imports pydantic only, so the command line can build its options without Prefect.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from recordio_core.fsio import CREDENTIALS_KEY
from recordio_core.plan import DEFAULT_RECORDS_PER_SHARD, MIN_SHARD_BYTES
from tasks.credentials import check_block_ref

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
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's default limit (recordio_core.image)
DEFAULT_REDUCING_GAP = 2.0
DEFAULT_IO_CONCURRENCY = 64  # recordio_core.fetch.DEFAULT_IO_CONCURRENCY
# Off by default: the difference hash costs ~5 % of the packing CPU (the sha256 of the bytes,
# always on, ~2 %); 3 is the suggested value (re-encoded/resized copies land within 2-3 bits).
DEFAULT_NEAR_DUPLICATE_DISTANCE: int | None = None

# Storage-option keys that hold credentials (matched case-insensitively, at any depth).
_SECRET_EXACT = {"key", "secret", "token", "password", "passwd", "pwd", "sas_token"}
_SECRET_PARTS = (
    "secret",
    "password",
    "passwd",
    "token",
    "credential",
    "access_key",
    "account_key",
    "private_key",
    "connection_string",
    "api_key",
    "apikey",
)


def is_secret_key(name: str) -> bool:
    low = name.lower()
    return low in _SECRET_EXACT or any(part in low for part in _SECRET_PARTS)


def secret_paths(options: Any, prefix: str = "") -> list[str]:
    """Dotted paths of credential-looking keys in a (nested) storage-options mapping."""
    found: list[str] = []
    if isinstance(options, Mapping):
        for k, v in options.items():
            path = f"{prefix}{k}"
            if is_secret_key(str(k)):
                found.append(path)
            else:
                found.extend(secret_paths(v, path + "."))
    return found


def split_secrets(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`(public, secret)`: top-level credential keys (and nested dicts holding any) apart."""
    public: dict[str, Any] = {}
    secret: dict[str, Any] = {}
    for k, v in options.items():
        if is_secret_key(str(k)) or secret_paths(v):
            secret[k] = v
        else:
            public[k] = v
    return public, secret


class BuildParameters(BaseModel):
    """Every parameter of `build-dataset`, checked together."""

    # hide_input_in_errors: an error must never echo a value back (a storage option refused for
    # holding a credential would otherwise print the credential).
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # The order is the form's order in the Prefect UI: the fields people change most first.
    source: Source
    output: Output
    resize: Resize = 0
    label_width: LabelWidth = 1
    train_ratio: TrainRatio = 1.0
    test_ratio: TestRatio = 0.0
    quality: Quality = 95
    pass_through: PassThrough = False
    lst: Lst = None
    pack_label: PackLabel = None
    allow_outside_root: AllowOutsideRoot = False
    recursive: Recursive = True
    exts: Exts = Field(default_factory=lambda: list(DEFAULT_EXTS))
    split_method: SplitMethod = "stable"
    record_order: RecordOrder = "hash"
    shuffle: Shuffle = True
    seed: Seed = 100
    chunks: Chunks = 1
    split_salt: SplitSalt = ""
    center_crop: CenterCrop = False
    color: Color = 1
    encoding: Encoding = ".jpg"
    inter_method: InterMethod = 1
    verify: Verify = "header"
    max_pixels: MaxPixels = DEFAULT_MAX_PIXELS
    reducing_gap: ReducingGap = DEFAULT_REDUCING_GAP
    records_per_shard: RecordsPerShard = None
    num_workers: NumWorkers = 0
    io_concurrency: IoConcurrency = DEFAULT_IO_CONCURRENCY
    reject_policy: RejectPolicy = "skip"
    max_reject_fraction: MaxRejectFraction = 1.0
    validate_decode: ValidateDecode = False
    on_decode_warning: OnDecodeWarning = "keep"
    dedupe: Dedupe = "none"
    near_duplicate_distance: NearDuplicateDistance = DEFAULT_NEAR_DUPLICATE_DISTANCE
    dry_run: DryRun = False
    storage_options: StorageOptionsParam = None
    source_storage_options: SourceStorageOptionsParam = None
    credentials_block: CredentialsBlockParam = None
    source_credentials_block: SourceCredentialsBlockParam = None
    dask_address: DaskAddress = None

    @field_validator("exts")
    @classmethod
    def _exts(cls, value: list[str]) -> list[str]:
        for ext in value:
            if not ext.startswith(".") or len(ext) < 2 or "/" in ext:
                raise ValueError(f"extensions look like '.jpg'; got {ext!r}")
        return value

    @field_validator("source", "output", "lst")
    @classmethod
    def _no_password_in_url(cls, value: str | None) -> str | None:
        try:
            password = urlsplit(value).password if value and "://" in value else None
        except ValueError:
            password = None
        if password:
            raise ValueError(
                "URLs must not carry a password (user:password@host): parameters are stored by "
                "Prefect and shown in its UI, and URLs appear in logs. Provide credentials "
                "through the environment or fsspec config."
            )
        return value

    @field_validator("storage_options", "source_storage_options")
    @classmethod
    def _no_secrets(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        found = secret_paths(value or {})
        if found:
            raise ValueError(
                f"storage options must not hold credentials (found {', '.join(found)}): "
                "parameters are stored by Prefect and shown in its UI. Provide credentials "
                "through the environment (AWS_ACCESS_KEY_ID, ...), AWS config files or fsspec "
                "config; `recflow build --storage-options` keeps them in its own process."
            )
        return value

    @field_validator("credentials_block", "source_credentials_block")
    @classmethod
    def _block_ref(cls, value: str | None) -> str | None:
        return value if value is None else check_block_ref(value)

    @model_validator(mode="after")
    def _cross_checks(self) -> BuildParameters:
        if self.train_ratio < 1.0 and self.train_ratio + self.test_ratio > 1.0 + 1e-9:
            raise ValueError(
                f"train_ratio + test_ratio must be <= 1 (val gets the rest); got "
                f"{self.train_ratio} + {self.test_ratio}"
            )
        if self.chunks > 1 and self.split_method != "im2rec":
            raise ValueError("chunks > 1 needs split_method='im2rec' (it is im2rec's --chunks)")
        if self.encoding == ".png" and not self.pass_through and self.quality > 9:
            raise ValueError(
                f"with encoding '.png', quality is the PNG compression level 0-9; got "
                f"{self.quality}"
            )
        if self.label_width > 1 and self.lst is None:
            raise ValueError(
                f"label_width={self.label_width} needs a .lst with that many label columns "
                "(lst=...); a folder listing gives one label per image"
            )
        if self.pass_through and (self.resize or self.center_crop):
            raise ValueError(
                "pass_through stores files untouched: it cannot be combined with resize or "
                "center_crop"
            )
        if self.source.rstrip("/") == self.output.rstrip("/"):
            raise ValueError("output must be a different folder than source")
        return self

    @property
    def packs_labels(self) -> bool:
        """Whether records hold all labels in their header: `pack_label`, or when it is left
        empty, `label_width > 1`. With one label the header is the same either way (im2rec packs
        only lines with several labels), so this is False then: what the bytes hold."""
        return self.label_width > 1 and self.pack_label is not False

    @property
    def output_options(self) -> dict[str, Any]:
        """fsspec options for OUTPUT: `storage_options`, naming `credentials_block` if set."""
        return with_credentials(self.storage_options, self.credentials_block)

    @property
    def source_options(self) -> dict[str, Any]:
        """fsspec options for SOURCE (and `lst`): `source_storage_options` or the output's,
        naming `source_credentials_block` or else `credentials_block` if either is set."""
        options = self.source_storage_options
        if options is None:
            options = self.storage_options
        return with_credentials(options, self.source_credentials_block or self.credentials_block)


def with_credentials(options: Mapping[str, Any] | None, block: str | None) -> dict[str, Any]:
    """`options` naming `block` as where their credentials are (resolved by tasks.credentials
    where a filesystem is opened: the block is loaded there, never passed around)."""
    out = dict(options or {})
    if block is not None:
        out[CREDENTIALS_KEY] = block
    return out


PARAMETER_NAMES: tuple[str, ...] = tuple(BuildParameters.model_fields)

_F = TypeVar("_F", bound=Callable[..., Any])


def annotation_description(annotation: Any) -> str | None:
    """The `Field(description=...)` of an `Annotated` alias (nested aliases merged, the
    innermost-last wins as in pydantic), or None."""
    if typing.get_origin(annotation) is not Annotated:
        return None
    return FieldInfo.from_annotation(annotation).description


def describe_parameters(fn: _F) -> _F:
    """Append a Google-style `Args:` section to `fn`'s docstring, one line per parameter, from
    the `Field(description=...)` of its `Annotated` type. Apply it below `@flow`.

    Why: Prefect builds each parameter's schema with its own `Field(description=None)`, which
    replaces the description inside `Annotated`; what it does read is the docstring's `Args:`
    section. So the Prefect form (`parameter_openapi_schema`), `recflow build --help` (from
    `BuildParameters`) and `help()` all show the one text written in the aliases above, and a
    new parameter written in the same style is described everywhere without more code.
    """
    hints = typing.get_type_hints(fn, include_extras=True)
    lines = []
    for name in inspect.signature(fn).parameters:
        text = annotation_description(hints.get(name))
        if text:
            lines.append(f"    {name}: {' '.join(text.split())}")
    if lines:
        doc = inspect.cleandoc(fn.__doc__ or "")
        fn.__doc__ = f"{doc}\n\nArgs:\n" + "\n".join(lines) + "\n"
    return fn


def parse_parameters(values: Mapping[str, Any]) -> BuildParameters:
    """`BuildParameters` from a mapping; a `ValueError` with one short line per problem."""
    from pydantic import ValidationError

    try:
        return BuildParameters.model_validate(dict(values))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(part) for part in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{where}: {msg}" if where else msg)
        raise ValueError("invalid parameters: " + "; ".join(problems)) from None
