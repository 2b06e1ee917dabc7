from recordio_flow.flows.cli import main


def test_help_exits_cleanly(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "recflow" in capsys.readouterr().out


def test_a_command_imports_only_its_own_module():
    import subprocess
    import sys

    code = (
        "import sys; from recordio_flow.flows.cli import build_parser; build_parser('im2rec'); "
        "print('pydantic' in sys.modules, 'recordio_flow.flows.cmd_build' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_the_console_entry_keeps_exit_codes_and_flushes_piped_output(tmp_path):
    """`recflow` ends with os._exit after flushing: the codes and the piped output survive."""
    import subprocess
    import sys

    def run(*args):
        return subprocess.run(
            [sys.executable, "-m", "recordio_flow.flows.cli", *args], capture_output=True, text=True
        )

    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("recflow ")
    usage = run("nosuch")
    assert usage.returncode == 2 and "invalid choice" in usage.stderr
    failed = run("validate", str(tmp_path / "missing.rec"))
    assert failed.returncode == 1 and failed.stdout + failed.stderr
    lst = tmp_path / "one.lst"
    lst.write_text("0\t1.000000\ta.jpg\n")
    (tmp_path / "a.jpg").write_bytes(b"not an image")
    packed = run("im2rec", str(tmp_path / "one"), str(tmp_path), "--pass-through")
    assert "1 rejected" in packed.stdout + packed.stderr, packed.stdout + packed.stderr
