"""How long something has waited or stayed open, as operators read it: one wording for the
CLI (``ml-connector errors``) and the console."""
from __future__ import annotations


def how_long(seconds: float) -> str:
    """"3 d 4 h", "2 h 5 min", "7 min", "40 s": the two largest units, rounded down."""
    days, rest = divmod(max(int(seconds), 0), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{secs} s"
