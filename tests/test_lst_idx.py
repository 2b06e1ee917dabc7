"""`.lst` and `.idx` readers and writers: im2rec's exact text, MXNet's lenient parsing (CRLF,
stray spaces), and errors that name the file, the line and what was wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from recordio_core.format.errors import IndexFileError, ListFileError
from recordio_core.format.idx import format_idx, parse_idx, read_idx, write_idx
from recordio_core.format.lst import (
    LstEntry,
    format_label,
    format_lst,
    format_lst_line,
    parse_lst,
    parse_lst_line,
    read_lst,
    write_lst,
)


def im2rec_line(item: list) -> str:
    """im2rec.py's write_list: `line = '%d\\t' % item[0]; for j in item[2:]: line += '%f\\t' % j;
    line += '%s\\n' % item[1]`."""
    line = f"{item[0]:d}\t"
    for j in item[2:]:
        line += f"{j:f}\t"
    return line + f"{item[1]}\n"


def im2rec_read(text: str) -> list[list]:
    """im2rec.py's read_list, minus its silent skipping (malformed lines raise here)."""
    items = []
    for raw in text.splitlines(keepends=True):
        line = [i.strip() for i in raw.strip().split("\t")]
        if len(line) < 3:
            continue
        items.append([int(line[0]), line[-1], *[float(i) for i in line[1:-1]]])
    return items


labels = st.integers(-4000, 4000).map(lambda v: v / 4)  # exact in %f
paths = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=20
).filter(lambda p: p.strip() == p and p)
entries = st.builds(
    LstEntry,
    index=st.integers(0, 2**64 - 1),
    labels=st.lists(labels, min_size=1, max_size=4).map(tuple),
    path=paths,
)


class TestLstFormat:
    def test_im2rec_format(self):
        e = LstEntry(7, (3.0,), "cat/a b.jpg")
        assert format_lst_line(e) == "7\t3.000000\tcat/a b.jpg\n"
        e2 = LstEntry(0, (1.0, -2.5, 0.125), "x.png")
        assert format_lst_line(e2) == "0\t1.000000\t-2.500000\t0.125000\tx.png\n"
        assert e2.label == 1.0

    @given(st.lists(entries, max_size=8))
    def test_round_trip_and_matches_im2rec(self, items):
        text = format_lst(items)
        assert text == "".join(im2rec_line([e.index, e.path, *e.labels]) for e in items)
        parsed = parse_lst(text, allow_duplicates=True)
        assert parsed == items
        assert [[e.index, e.path, *e.labels] for e in parsed] == im2rec_read(text)

    @pytest.mark.parametrize(
        ("value", "text"),
        [
            (3.0, "3.000000"),  # im2rec.py's %f whenever it keeps the value
            (-2.5, "-2.500000"),
            (0.333333, "0.333333"),
            (1e20, "100000000000000000000.000000"),
            (0.1234567, "0.1234567"),  # %f would write 0.123457: the record would disagree
            (1 / 3, "0.3333333333333333"),
            (1e-7, "0.0000001"),  # never an exponent
            (123456.789, "123456.789000"),
        ],
    )
    def test_a_label_is_written_as_im2rec_does_unless_that_changes_it(self, value, text):
        assert format_label(value) == text
        assert float(text) == value

    @given(st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=4))
    def test_every_finite_label_reads_back_as_itself(self, values):
        entry = LstEntry(1, tuple(values), "a.jpg")
        assert parse_lst(format_lst_line(entry)) == [entry]

    def test_crlf_blank_lines_and_stray_spaces(self):
        text = "1\t 2.0 \t a/b c.jpg  \r\n\r\n  \n 2 \t3\t4\tx.jpg\r3\t0\ty.jpg"
        got = parse_lst(text)
        assert got == [
            LstEntry(1, (2.0,), "a/b c.jpg"),
            LstEntry(2, (3.0, 4.0), "x.jpg"),
            LstEntry(3, (0.0,), "y.jpg"),
        ]

    def test_line_numbers_count_every_line_ending(self):
        text = "1\t0\ta.jpg\r\n\r\n2\t0\tb.jpg\r3\tzero\tc.jpg\n"
        with pytest.raises(ListFileError) as err:
            parse_lst(text, source="mem.lst")
        assert (err.value.source, err.value.lineno) == ("mem.lst", 4)

    def test_form_feed_in_a_path_is_not_a_line_break(self):
        assert parse_lst("1\t0\ta\x0cb.jpg\n")[0].path == "a\x0cb.jpg"

    def test_blank_line_is_none(self):
        assert parse_lst_line("  \t \r\n") is None

    def test_label_width(self):
        assert parse_lst("1\t2\t3\ta.jpg\n", label_width=2)[0].labels == (2.0, 3.0)
        with pytest.raises(ListFileError, match="label_width=1 but the line has 2"):
            parse_lst("1\t2\t3\ta.jpg\n", label_width=1)


BAD_LINES = {
    "missing-columns": ("5\ta.jpg", "at least 3 tab-separated columns"),
    "only-index": ("5", "found 1"),
    "space-separated": ("5 1.0 a.jpg", "found 1"),
    "non-numeric-index": ("five\t1.0\ta.jpg", "index 'five' is not an integer"),
    "float-index": ("5.0\t1.0\ta.jpg", "index '5.0' is not an integer"),
    "negative-index": ("-1\t1.0\ta.jpg", "outside"),
    "huge-index": (f"{2**64}\t1.0\ta.jpg", "outside"),
    "non-numeric-label": ("5\tcat\ta.jpg", "label in column 2 \\('cat'\\) is not a number"),
    "second-label-bad": ("5\t1\t2x\ta.jpg", "column 3"),
    "nan-label": ("5\tnan\ta.jpg", "not finite"),
    "empty-path": ("5\t1.0\t", "the path \\(last column\\) is empty"),
    "empty-path-spaces": ("5\t1.0\t2.0\t  ", "the path \\(last column\\) is empty"),
}


class TestLstErrors:
    @pytest.mark.parametrize("case", sorted(BAD_LINES))
    def test_error_names_file_line_and_problem(self, tmp_path, case):
        bad, message = BAD_LINES[case]
        path = tmp_path / "data.lst"
        path.write_text(f"0\t0.000000\tok.jpg\r\n\n{bad}\r\n1\t0\tok2.jpg\n")
        with pytest.raises(ListFileError, match=message) as err:
            read_lst(str(path))
        assert err.value.lineno == 3
        assert err.value.source == str(path)
        assert str(err.value).startswith(f"{path}:3: ")

    def test_duplicate_index_names_both_lines(self):
        with pytest.raises(ListFileError, match="duplicate index 1 \\(first seen on line 1\\)"):
            parse_lst("1\t0\ta.jpg\n2\t0\tb.jpg\n1\t0\tc.jpg\n", source="d.lst")
        assert len(parse_lst("1\t0\ta\n1\t0\tb\n", allow_duplicates=True)) == 2

    def test_not_utf8(self, tmp_path):
        path = tmp_path / "latin.lst"
        path.write_bytes(b"1\t0\t\xff.jpg\n")
        with pytest.raises(ListFileError, match="not UTF-8"):
            read_lst(str(path))

    def test_entry_validation(self):
        with pytest.raises(ValueError, match="at least one label"):
            LstEntry(1, (), "a.jpg")
        with pytest.raises(ValueError, match="empty path"):
            LstEntry(1, (0.0,), "")
        with pytest.raises(ValueError, match="2\\*\\*64"):
            LstEntry(-1, (0.0,), "a.jpg")


class TestLstFiles:
    @pytest.mark.parametrize("base", ["local", "memory"])
    def test_write_then_read(self, tmp_path, base):
        url = str(tmp_path / "sub" / "x.lst") if base == "local" else "memory://lstio/x.lst"
        items = [LstEntry(3, (1.0,), "b/ü.jpg"), LstEntry(1, (0.0, 2.0), "a.jpg")]
        write_lst(url, items)
        assert read_lst(url) == items
        if base == "local":
            folder = Path(url).parent
            assert sorted(p.name for p in folder.iterdir()) == ["x.lst"]  # no temp files left
            assert Path(url).read_text() == "3\t1.000000\tb/ü.jpg\n1\t0.000000\t2.000000\ta.jpg\n"


class TestIdx:
    def test_format_is_mxnets(self):
        assert format_idx([(0, 0), (5, 16), ("k", 32)]) == "0\t0\n5\t16\nk\t32\n"

    @given(
        st.lists(st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**40).map(lambda v: v * 4)))
    )
    def test_round_trip(self, pairs):
        assert parse_idx(format_idx(pairs)) == pairs

    def test_lenient_like_mxnet(self):
        text = " 1\t0 \r\n\n2 \t 16\r3 32\n"
        assert parse_idx(text) == [(1, 0), (2, 16), (3, 32)]

    def test_string_keys(self):
        text = "cat/a b.jpg\t0\nk2\t8\n"
        assert parse_idx(text, key_type=str) == [("cat/a b.jpg", 0), ("k2", 8)]

    @pytest.mark.parametrize(
        ("line", "message"),
        [
            ("7", "expected 'key<TAB>offset', found 1 field"),
            ("7\t8\t9", "found 3 field"),
            ("seven\t8", "key 'seven' is not a valid int"),
            ("7\teight", "offset 'eight' is not an integer"),
            ("7\t6", "offset 6 is not a non-negative multiple of 4"),
            ("7\t-4", "offset -4"),
        ],
    )
    def test_errors_name_file_and_line(self, tmp_path, line, message):
        path = tmp_path / "bad.idx"
        path.write_text(f"0\t0\n\n{line}\n")
        with pytest.raises(IndexFileError, match=message) as err:
            read_idx(str(path))
        assert (err.value.source, err.value.lineno) == (str(path), 3)
        assert str(err.value).startswith(f"{path}:3: ")

    def test_not_utf8(self, tmp_path):
        path = tmp_path / "bin.idx"
        path.write_bytes(b"\xff\xfe\t0\n")
        with pytest.raises(IndexFileError, match="not UTF-8"):
            read_idx(str(path))

    @pytest.mark.parametrize("base", ["local", "memory"])
    def test_write_then_read(self, tmp_path, base):
        url = str(tmp_path / "x.idx") if base == "local" else "memory://idxio/x.idx"
        write_idx(url, [(2, 0), (0, 24)])
        assert read_idx(url) == [(2, 0), (0, 24)]
        write_idx(url, [("a", 4)])
        assert read_idx(url, key_type=str) == [("a", 4)]


@pytest.mark.parametrize(
    "line",
    [
        "5\t3.000000\ta/b.jpg",
        "5\t3\ta b.jpg",
        "0\t-1.5\t2.0\tx.png",
        "5\t3.\tx",
        "5\t-0\tx",
        "18446744073709551615\t1\tx",
        "5\t3.0\t x",  # white space around the path: stripped by the general parser
        "5\t3.0\tx ",
        "5\t1e5\tx",  # exponent, sign, non-ASCII digits: the general parser's int()/float()
        "+5\t1\tx",
        "\u0665\t1\tx",
        "5\t" + "9" * 31 + "\tx",  # more digits than the plain form allows
        "5\t1\t\u00a0x",
        "5\t1\ta\u3000",
    ],
)
def test_plain_lines_parse_as_the_general_parser_does(line):
    from recordio_core.format.lst import plain_entry

    fast = plain_entry(line, None)
    assert fast is None or fast == parse_lst_line(line)
    assert parse_lst(line) == [parse_lst_line(line)]


@pytest.mark.parametrize(
    "line",
    ["5\t3.0\t", "18446744073709551616\t1\tx", "5\tnan\tx", "5\t1\ta\x00b", "5\tx\ta.jpg"],
)
def test_bad_lines_are_not_plain(line):
    from recordio_core.format.lst import plain_entry

    assert plain_entry(line, None) is None
    with pytest.raises(ListFileError):
        parse_lst(line)


def test_a_plain_line_of_the_wrong_width_is_refused_with_the_general_message():
    with pytest.raises(ListFileError, match="label_width=2 but the line has 1 label"):
        parse_lst("5\t3.0\tx.jpg", label_width=2)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("1\t0\ta.jpg\n2\t0\t../b.jpg\n1\t0\tc.jpg\n", 2, "climbs out"),
        ("1\t0\ta.jpg\n1\t0\tc.jpg\n2\t0\t../b.jpg\n", 2, "duplicate index 1"),
        ("1\t0\ta.jpg\n2\t0\tb.jpg\n3\t0\t/abs.jpg\n", 3, "absolute path"),
    ],
)
def test_the_first_problem_in_line_order_is_reported(text, line, words):
    """Duplicates and paths outside the root are checked in bulk; a failure still names the
    first bad line, whichever kind of problem it is."""
    from recordio_core.format.lst import ListFileError, parse_lst

    with pytest.raises(ListFileError, match=words) as err:
        parse_lst(text, allow_outside_root=False)
    assert err.value.lineno == line
    assert len(parse_lst(text, allow_outside_root=True, allow_duplicates=True)) == 3


def test_checked_entry_is_an_ordinary_entry():
    from recordio_core.format.lst import LstEntry, checked_entry

    made = checked_entry(7, (1.0, 2.5), "a/b.jpg")
    assert made == LstEntry(7, (1.0, 2.5), "a/b.jpg")
    assert hash(made) == hash(LstEntry(7, (1.0, 2.5), "a/b.jpg"))
    assert made.label == 1.0
    with pytest.raises(AttributeError):
        made.index = 8  # type: ignore[misc]
