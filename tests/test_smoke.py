from flows.cli import main


def test_help_exits_cleanly(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    assert "recflow" in capsys.readouterr().out
