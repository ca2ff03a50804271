"""Timestamps of a looping MPEG-TS live that keep going up, as a real live's do.

The test origin serves a short encode over and over. Served as it is, every loop starts
its timestamps again, which players must treat as a discontinuity: VLC loses media
there ("too strange dts"). A real live's clock never goes back, so the origin shifts
each repeat's PTS, DTS and PCR by the loop's length times the repeat's number.

`shift(data, ticks)` adds `ticks` (90 kHz) to every PTS and DTS of the PES headers
that start in the packets, and to every PCR base, modulo 2**33. It is a test double's
helper: it assumes whole 188-byte packets, as ffmpeg's segments are.
"""

from __future__ import annotations

_PACKET = 188
_WRAP = 1 << 33


def shift(data: bytes, ticks: int) -> bytes:
    if ticks % _WRAP == 0:
        return data
    out = bytearray(data)
    for start in range(0, len(out) - _PACKET + 1, _PACKET):
        if out[start] != 0x47:
            continue
        control = (out[start + 3] >> 4) & 0x3
        payload = start + 4
        if control in (2, 3):  # an adaptation field
            length = out[start + 4]
            if length and out[start + 5] & 0x10:  # PCR
                _shift_pcr(out, start + 6, ticks)
            payload = start + 5 + length
        unit_start = out[start + 1] & 0x40
        end = start + _PACKET
        pes = control in (1, 3) and unit_start and payload + 19 <= end
        if pes and out[payload : payload + 3] == b"\x00\x00\x01":
            flags = out[payload + 7] >> 6
            if flags & 0x2:
                _shift_timestamp(out, payload + 9, ticks)
            if flags == 0x3:
                _shift_timestamp(out, payload + 14, ticks)
    return bytes(out)


def _shift_timestamp(buffer: bytearray, at: int, ticks: int) -> None:
    b = buffer[at : at + 5]
    value = ((b[0] >> 1) & 0x7) << 30 | b[1] << 22 | (b[2] >> 1) << 15 | b[3] << 7 | b[4] >> 1
    value = (value + ticks) % _WRAP
    buffer[at] = (b[0] & 0xF1) | ((value >> 29) & 0xE)
    buffer[at + 1] = (value >> 22) & 0xFF
    buffer[at + 2] = ((value >> 14) & 0xFE) | 1
    buffer[at + 3] = (value >> 7) & 0xFF
    buffer[at + 4] = ((value << 1) & 0xFE) | 1


def _shift_pcr(buffer: bytearray, at: int, ticks: int) -> None:
    b = buffer[at : at + 6]
    base = b[0] << 25 | b[1] << 17 | b[2] << 9 | b[3] << 1 | b[4] >> 7
    base = (base + ticks) % _WRAP
    buffer[at] = (base >> 25) & 0xFF
    buffer[at + 1] = (base >> 17) & 0xFF
    buffer[at + 2] = (base >> 9) & 0xFF
    buffer[at + 3] = (base >> 1) & 0xFF
    buffer[at + 4] = ((base & 1) << 7) | (b[4] & 0x7F)
