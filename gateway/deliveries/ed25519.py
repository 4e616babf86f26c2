"""Whether 32 bytes are a strong Ed25519 public key: a canonical encoding of a point of the
prime-order subgroup, other than the identity.

Ed25519 verifiers (OpenSSL's among them) accept any point that decodes. A small-order key (the
identity, all zeros and the other torsion points) lets anyone forge signatures without a
private key: with R the identity and S = 0, the check holds for a share of all messages. A key
with a small-order component (a "mixed-order" point) is as suspect. A receipt key must be a
point P with [L]P the identity (L the order of the base point) and P not the identity; its
encoding must be canonical (y below the field prime, no "negative zero" x).

Pure Python. `is_strong_public_key` (one decode and one multiplication by L, a few
milliseconds) is run at enrollment; `is_small_order` (a decode and three doublings, tens of
microseconds) on every receipt check, so a weak key stored before can never verify anything.
"""

from __future__ import annotations

from typing import Final

_P: Final = 2**255 - 19
_L: Final = 2**252 + 27742317777372353535851937790883648493  # the base point's order
_D: Final = -121665 * pow(121666, _P - 2, _P) % _P
_SQRT_M1: Final = pow(2, (_P - 1) // 4, _P)

# Extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, x*y = T/Z.
_Point = tuple[int, int, int, int]
_IDENTITY: Final[_Point] = (0, 1, 1, 0)


def _decode(raw: bytes) -> _Point | None:
    """The point `raw` encodes (RFC 8032, 5.1.3), or None when it is not a canonical encoding."""
    if len(raw) != 32:
        return None
    number = int.from_bytes(raw, "little")
    sign = number >> 255
    y = number & ((1 << 255) - 1)
    if y >= _P:
        return None  # non-canonical: y written as y + p
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x2 = u * pow(v, _P - 2, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P != 0:
        x = x * _SQRT_M1 % _P
    if (x * x - x2) % _P != 0:
        return None  # no point has this y
    if x == 0 and sign == 1:
        return None  # non-canonical: "negative" zero
    if x & 1 != sign:
        x = _P - x
    return (x, y, 1, x * y % _P)


def _add(a: _Point, b: _Point) -> _Point:
    """Complete addition on the twisted Edwards curve -x^2 + y^2 = 1 + d x^2 y^2."""
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % _P
    bb = (y1 + x1) * (y2 + x2) % _P
    cc = 2 * _D * t1 * t2 % _P
    dd = 2 * z1 * z2 % _P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _times(point: _Point, scalar: int) -> _Point:
    result = _IDENTITY
    addend = point
    while scalar:
        if scalar & 1:
            result = _add(result, addend)
        addend = _add(addend, addend)
        scalar >>= 1
    return result


def _is_identity(point: _Point) -> bool:
    x, y, z, _ = point
    return x % _P == 0 and (y - z) % _P == 0


def is_strong_public_key(raw: bytes) -> bool:
    """True when `raw` is a canonical encoding of a point of prime order L (see the module)."""
    point = _decode(raw)
    if point is None or _is_identity(point):
        return False
    return _is_identity(_times(point, _L))


def is_small_order(raw: bytes) -> bool:
    """True when `raw` does not canonically encode a point, or encodes one of order 1, 2, 4 or
    8: a key any signature may be forged for."""
    point = _decode(raw)
    if point is None:
        return True
    for _ in range(3):
        point = _add(point, point)
    return _is_identity(point)
