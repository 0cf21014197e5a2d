"""Stamps as int nanoseconds, and back into any `builtin_interfaces/Time`-shaped message."""

from __future__ import annotations

NS_PER_S = 1_000_000_000


def to_ns(stamp) -> int:
    """ns since the epoch from a message with `sec` and `nanosec`."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def fill(stamp, ns: int):
    """Write `ns` into a Time message (rclpy or dds class alike) and return it."""
    stamp.sec, stamp.nanosec = divmod(int(ns), NS_PER_S)
    return stamp
