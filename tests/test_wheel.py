"""The package as a user installs it: a wheel built from this repository, installed into a fresh
virtual environment outside it, used from another folder.

The wheel holds the engine as `recordio_core` and the pipeline as `recordio_flow.flows` and
`recordio_flow.tasks`: no top-level `flows` or `tasks`, names other distributions use too.
Every import path the README documents works from it, and so do `recflow im2rec` and a whole
`recflow build` on its temporary Prefect API. The new environment gets the dependencies by
seeing this one's site-packages (a path in a .pth file: nothing is downloaded), not this
repository, which is never on its path.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
from pipeline_fixtures import image_tree

from recordio_core.building.validate import validate_manifest
from recordio_core.manifest import read_manifest

ROOT = Path(__file__).resolve().parent.parent

# What the README tells users to import (and `python -m` modules it tells them to run).
DOCUMENTED_IMPORTS = textwrap.dedent(
    """
    from recordio_core import recordio
    from recordio_core.reader import ImageRecordIter, ImageRecordReader
    from recordio_core.manifest import read_manifest
    import recordio_core.torch_dataset
    from recordio_flow.flows.build import build_dataset
    from recordio_flow.flows.deploy import make_deployments
    import recordio_flow.flows.zombies
    import recordio_flow.tasks.pack
    recordio.MXIndexedRecordIO, recordio.pack_img, recordio.unpack_img, recordio.IRHeader
    """
)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the wheel, the python of a fresh venv that has it installed)."""
    top = tmp_path_factory.mktemp("wheel")
    dist = top / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(ROOT),
        ],  # fmt: skip
        check=True,
        cwd=top,
        capture_output=True,
    )
    (wheel,) = dist.glob("recordio_flow-*.whl")
    venv = top / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    deps = [p for p in sys.path if p.endswith("site-packages")]
    deps = deps or [sysconfig.get_paths()["purelib"]]
    (site / "deps.pth").write_text("\n".join(deps) + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],  # fmt: skip
        check=True,
        capture_output=True,
    )
    return wheel, python


def _outside_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PREFECT_"))}
    env.update(PREFECT_SERVER_ANALYTICS_ENABLED="false", DO_NOT_TRACK="1")
    return env


def _packages(names: list[str]) -> set[str]:
    return {n.rsplit("/", 1)[0].replace("/", ".") for n in names if n.endswith("/__init__.py")}


def test_the_wheel_has_one_namespace_and_every_package_of_the_tree(installed):
    wheel, _ = installed
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names if not n.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"recordio_core", "recordio_flow"}
    tree = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for folder in ("recordio_core", "flows", "tasks")
        for p in (ROOT / folder).rglob("__init__.py")
    }
    want = {t if t.startswith("recordio_core") else f"recordio_flow.{t}" for t in tree}
    assert _packages(names) == want
    assert "recordio_flow/__init__.py" not in names  # a namespace: other code may share it
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "recflow = recordio_flow.flows.cli:entry" in zipfile.ZipFile(wheel).read(entry).decode()


def test_documented_imports_work_from_the_wheel_outside_the_repository(installed, tmp_path):
    _, python = installed
    script = DOCUMENTED_IMPORTS + textwrap.dedent(
        f"""
        import importlib.util, recordio_core, recordio_flow.flows
        assert importlib.util.find_spec("flows") is None, "a top-level flows package"
        assert importlib.util.find_spec("tasks") is None, "a top-level tasks package"
        for module in (recordio_core, recordio_flow.flows):
            assert not module.__path__[0].startswith({str(ROOT)!r}), module.__path__
        print("ok")
        """
    )
    out = subprocess.run(
        [str(python), "-c", script],
        cwd=tmp_path,
        env=_outside_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stdout + out.stderr


@pytest.mark.slow
def test_recflow_from_the_wheel_packs_and_builds(installed, tmp_path):
    _, python = installed
    recflow = python.parent / "recflow"
    files = image_tree(tmp_path / "images", classes=2, per_class=3)
    env = _outside_env()
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")

    def run(*args: str, timeout: float = 60) -> str:
        out = subprocess.run(
            [str(recflow), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    assert "build" in run("--help")
    run("im2rec", "data", "images", "--list", "--recursive")
    run("im2rec", "data", "images", "--resize", "16")
    assert (tmp_path / "data.rec").stat().st_size > 0
    run("build", "images", "ds", "--resize", "16", timeout=240)
    manifest = read_manifest(str(tmp_path / "ds" / "manifest.json"))
    assert sum(s.records for s in manifest.splits.values()) == len(files)
    assert all(r.ok for r in validate_manifest(str(tmp_path / "ds")))
