"""Dates as people read them, in the newsletter's time zone."""

from __future__ import annotations

import re
from datetime import datetime
from zoneinfo import ZoneInfo


def format_date(moment: datetime, date_format: str, zone: ZoneInfo) -> str:
    """The moment in `zone`, with %-d style (no padding) supported on every platform."""
    local = moment.astimezone(zone)
    unpadded = re.sub(
        r"%-([dmHIMSjy])", lambda m: str(int(local.strftime("%" + m.group(1)))), date_format
    )
    return local.strftime(unpadded)
