"""Reader of purchase histories in the CDNOW format.

Each line holds four whitespace-separated fields: customer id, purchase date as YYYYMMDD,
quantity (number of items) and order amount in dollars with cents. A first line that
starts with a letter is a header and is skipped. The CDNOW master file (69,659 purchases
by 23,570 customers, 1997-01-01 to 1998-06-30) ships as a data file of the ``lifetimes``
distribution.
"""

import datetime as dt
import importlib.metadata
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

from services.decision.limits import MAX_ORDER_AMOUNT_CENTS

CDNOW_DISTRIBUTION = "lifetimes"
CDNOW_MASTER_FILE = "lifetimes/datasets/CDNOW_master.txt"

_DATE_PATTERN = re.compile(r"^\d{8}$")
_AMOUNT_PATTERN = re.compile(r"^\d+(\.\d{1,2})?$")


class CdnowFormatError(ValueError):
    """A line of a CDNOW-format file is malformed; the message names the file and line."""

    def __init__(self, path: Path, line_number: int, problem: str) -> None:
        super().__init__(f"{path}:{line_number}: {problem}")
        self.path = path
        self.line_number = line_number


@dataclass(frozen=True, slots=True)
class Purchase:
    """One purchase line: the customer, the day, the number of items and the amount."""

    customer_id: str
    date: dt.date
    quantity: int
    amount_cents: int


def default_cdnow_path() -> Path:
    """Return the path of the CDNOW master file installed with the ``lifetimes`` package.

    Raises FileNotFoundError when the distribution or the file is missing.
    """
    try:
        distribution = importlib.metadata.distribution(CDNOW_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(
            f"the {CDNOW_DISTRIBUTION!r} distribution is not installed, so "
            f"{CDNOW_MASTER_FILE} is missing: pip install 'trustfirst[data]' "
            "or pass the path of a CDNOW-format file"
        ) from exc

    for file in distribution.files or []:
        if file.as_posix() == CDNOW_MASTER_FILE:
            path = Path(str(distribution.locate_file(file)))
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"{CDNOW_MASTER_FILE} is not among the installed files of {CDNOW_DISTRIBUTION!r}"
    )


def read_cdnow(path: Path | str) -> list[Purchase]:
    """Read every purchase of a CDNOW-format file, in file order.

    Raises CdnowFormatError for the first malformed line.
    """
    path = Path(path)
    purchases: list[Purchase] = []
    with path.open(encoding="ascii", errors="strict", newline=None) as file:
        for line_number, line in enumerate(file, start=1):
            fields = line.split()
            if not fields:
                continue
            if line_number == 1 and fields[0][:1].isalpha():
                continue
            purchases.append(_parse_fields(fields, path, line_number))
    return purchases


def _parse_fields(fields: list[str], path: Path, line_number: int) -> Purchase:
    if len(fields) != 4:
        raise CdnowFormatError(
            path, line_number, f"expected 4 fields, found {len(fields)}"
        )
    customer_id, date_text, quantity_text, amount_text = fields

    if not customer_id.isdigit():
        raise CdnowFormatError(
            path, line_number, f"invalid customer id {customer_id!r}"
        )
    date = _parse_date(date_text, path, line_number)

    if not quantity_text.isdigit() or int(quantity_text) < 1:
        raise CdnowFormatError(
            path, line_number, f"invalid quantity {quantity_text!r}: expected 1 or more"
        )
    amount_cents = _parse_amount(amount_text, path, line_number)

    return Purchase(customer_id, date, int(quantity_text), amount_cents)


def _parse_date(text: str, path: Path, line_number: int) -> dt.date:
    if _DATE_PATTERN.match(text):
        try:
            return dt.date(int(text[:4]), int(text[4:6]), int(text[6:]))
        except ValueError:
            pass
    raise CdnowFormatError(
        path, line_number, f"invalid date {text!r}: expected YYYYMMDD"
    )


def _parse_amount(text: str, path: Path, line_number: int) -> int:
    if _AMOUNT_PATTERN.match(text):
        try:
            cents = int(Decimal(text) * 100)
        except InvalidOperation:
            cents = -1
        if 0 <= cents <= MAX_ORDER_AMOUNT_CENTS:
            return cents
    raise CdnowFormatError(
        path,
        line_number,
        f"invalid amount {text!r}: expected dollars such as 12.34, at most "
        f"{MAX_ORDER_AMOUNT_CENTS // 100}",
    )
