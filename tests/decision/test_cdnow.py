"""The CDNOW-format reader, on small files written here and on the installed master file."""

import datetime as dt
from pathlib import Path

import pytest

from services.decision.cdnow import (
    CdnowFormatError,
    Purchase,
    default_cdnow_path,
    read_cdnow,
)


def test_read_small_file(tmp_path: Path) -> None:
    path = tmp_path / "small.txt"
    path.write_bytes(
        b" customer_id  date number_of_cds  dollar_value\r\n"
        b" 00001 19970101  1   11.77\r\n"
        b"\r\n"
        b" 00002 19970112  5   77.00\r\n"
        b" 00002 19980630  2    0.5\r\n"
    )

    purchases = read_cdnow(path)

    assert purchases == [
        Purchase("00001", dt.date(1997, 1, 1), 1, 1177),
        Purchase("00002", dt.date(1997, 1, 12), 5, 7700),
        Purchase("00002", dt.date(1998, 6, 30), 2, 50),
    ]


def test_read_without_header(tmp_path: Path) -> None:
    path = tmp_path / "plain.txt"
    path.write_text("7 19970305 3 30.00\n")

    assert read_cdnow(path) == [Purchase("7", dt.date(1997, 3, 5), 3, 3000)]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("00003 19970102 2", "expected 4 fields, found 3"),
        ("00003 19970102 2 20.76 x", "expected 4 fields, found 5"),
        ("abc 19970102 2 20.76", "invalid customer id 'abc'"),
        ("00003 1997-01-02 2 20.76", "invalid date '1997-01-02'"),
        ("00003 19970230 2 20.76", "invalid date '19970230'"),
        ("00003 19970102 0 20.76", "invalid quantity '0'"),
        ("00003 19970102 -1 20.76", "invalid quantity '-1'"),
        ("00003 19970102 2 -3.00", "invalid amount '-3.00'"),
        ("00003 19970102 2 1.234", "invalid amount '1.234'"),
        ("00003 19970102 2 99999999.00", "invalid amount '99999999.00'"),
    ],
)
def test_read_malformed_line(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "bad.txt"
    path.write_text(
        f"customer_id date number_of_cds dollar_value\n1 19970101 1 5.00\n{line}\n"
    )

    with pytest.raises(CdnowFormatError) as caught:
        read_cdnow(path)

    assert caught.value.line_number == 3
    assert str(caught.value).startswith(f"{path}:3: {problem}")


def test_header_only_on_first_line(tmp_path: Path) -> None:
    path = tmp_path / "late_header.txt"
    path.write_text("1 19970101 1 5.00\ncustomer_id date number_of_cds dollar_value\n")

    with pytest.raises(CdnowFormatError) as caught:
        read_cdnow(path)

    assert caught.value.line_number == 2


def test_default_path_is_lifetimes_file() -> None:
    path = default_cdnow_path()

    assert path.name == "CDNOW_master.txt"
    assert path.parent.parts[-2:] == ("lifetimes", "datasets")


def test_read_master_file() -> None:
    purchases = read_cdnow(default_cdnow_path())

    assert len(purchases) == 69_659
    assert len({p.customer_id for p in purchases}) == 23_570
    assert min(p.date for p in purchases) == dt.date(1997, 1, 1)
    assert max(p.date for p in purchases) == dt.date(1998, 6, 30)
