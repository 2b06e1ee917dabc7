"""`make demo`: generate a small image folder and build a dataset from it end to end.

Writes three classes of generated images (36 JPEG/PNG files, the same bytes every time) to
`./demo-output/source` unless that folder exists, runs the `build-dataset` flow on a temporary
local Prefect API (or the server in `PREFECT_API_URL`, if set), and prints where the dataset
went. Run it again: every shard is reused from the first run.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

DEMO_DIR = Path("demo-output")
CLASSES = ("circles", "stripes", "checks")
PER_CLASS = 12


def _image(kind: str, i: int) -> tuple[bytes, str]:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1000 * CLASSES.index(kind) + i)
    w, h = int(rng.integers(80, 160)), int(rng.integers(80, 160))
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, size=3)
    if kind == "circles":
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        v = np.sin(np.hypot(x - cx, y - cy) / rng.uniform(3, 8))
    elif kind == "stripes":
        angle = rng.uniform(0, np.pi)
        v = np.sin((x * np.cos(angle) + y * np.sin(angle)) / rng.uniform(2, 6))
    else:
        s = rng.uniform(6, 16)
        v = np.sign(np.sin(x / s) * np.sin(y / s))
    pixels = base[None, None, :] + 55 * v[..., None] + rng.normal(0, 6, size=(h, w, 3))
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    out = io.BytesIO()
    if i % 4 == 3:
        img.save(out, format="PNG")
        return out.getvalue(), ".png"
    img.save(out, format="JPEG", quality=90)
    return out.getvalue(), ".jpg"


def make_demo_images(root: Path) -> int:
    """Write the demo images under `root`; returns how many."""
    n = 0
    for kind in CLASSES:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(PER_CLASS):
            data, ext = _image(kind, i)
            (folder / f"{kind}_{i:02d}{ext}").write_bytes(data)
            n += 1
    return n


def main() -> int:
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    source = DEMO_DIR / "source"
    output = DEMO_DIR / "dataset"
    if source.exists():
        print(f"demo: using the images in {source}/")
    else:
        n = make_demo_images(source)
        print(f"demo: generated {n} images in {len(CLASSES)} classes under {source}/")
    print("demo: running the build-dataset flow on a temporary local Prefect API ...")

    from recordio_flow.flows.local_api import prefect_api

    with prefect_api() as api:
        from recordio_flow.flows.build import build_dataset
        from recordio_flow.flows.cmd_build import format_summary
        from recordio_flow.flows.runner import run_flow_quietly, wait_for_api

        wait_for_api(api)
        ok, result = run_flow_quietly(
            build_dataset,
            {
                "source": str(source),
                "output": str(output),
                "train_ratio": 0.8,
                "test_ratio": 0.1,
                "resize": 64,
                "records_per_shard": 10,
            },
            heartbeats=api is None,
        )
    if not ok:
        print(f"demo: the build failed: {result}", file=sys.stderr)
        return 1
    print(format_summary(result))
    print(f"demo: dataset written to {output.resolve()}/ (manifest.json lists every shard)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
