"""recordio_core.building.progress: the command-line progress line."""

from __future__ import annotations

import io
import threading

import pytest

from recordio_core.building.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_quiet_on_a_pipe_until_close():
    out = io.StringIO()
    with Progress(total=4, label="train.lst", stream=out) as bar:
        bar(1)
        bar(3)
        assert out.getvalue() == ""
    line = out.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    assert "train.lst" in line and "4/4" in line and "100.0%" in line and "img/s" in line


def test_live_redraws_with_carriage_return():
    out = Tty()
    bar = Progress(total=3, stream=out, interval=0.0)
    for _ in range(3):
        bar(1)
    bar.close()
    bar.close()  # idempotent
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "3/3" in text


def test_unknown_total_and_thread_safety():
    out = io.StringIO()
    bar = Progress(stream=out, unit="rec")
    threads = [threading.Thread(target=lambda: [bar(1) for _ in range(500)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.close()
    assert bar.done == 2000
    assert out.getvalue().startswith("2000  ") and "rec/s" in out.getvalue()


def test_negative_total_is_an_error():
    with pytest.raises(ValueError, match="total"):
        Progress(total=-1)
