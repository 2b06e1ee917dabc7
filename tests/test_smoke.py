from flows.cli import main


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
        "import sys; from flows.cli import build_parser; build_parser('im2rec'); "
        "print('pydantic' in sys.modules, 'flows.cmd_build' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
