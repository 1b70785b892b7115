"""Product keys: parsing, validation and the codec of simulated MAK and KMS host keys.

A product key is 25 characters from a 24-letter alphabet, shown as five groups of five.
GVLKs (the public KMS client setup keys) are recognised from the catalog. Simulated keys carry a
payload and two check characters:

    chars 1-23   base-24 number  N = ((((version*256 + product)*4 + channel)*2**32 + serial)
                                      * 2**60 + security)
    chars 24-25  chosen so that sum((i+1) * value(char i) for i in 0..24) % 29 == 0

Weights 1..25 are distinct and non-zero modulo the prime 29, and values differ by at most 23,
so every single-character typo and every swap of two adjacent characters changes the sum and is
caught. The 60-bit security value is an HMAC only the activation authority can compute; the
client cannot tell a forged security value from a real one, the authority can (0xC004C001).
"""

from __future__ import annotations

from dataclasses import dataclass

from ospp.core.catalog import Channel, Product, catalog
from ospp.core.errors import E_INVALID_KEY, N_, LicensingError, Message

ALPHABET = "BCDFGHJKMPQRTVWXY2346789"
_VALUE = {ch: i for i, ch in enumerate(ALPHABET)}
KEY_LENGTH = 25
_DATA_CHARS = 23
_MODULUS = 29
KEY_VERSION = 1
SERIAL_BITS = 32
SECURITY_BITS = 60
_CHANNEL_CODES = {Channel.MAK: 1, Channel.KMS_HOST: 2}
_CODE_CHANNELS = {code: chan for chan, code in _CHANNEL_CODES.items()}


@dataclass(frozen=True)
class ProductKey:
    """A validated product key. ``text`` is the normalised form with dashes."""

    text: str
    product: Product
    channel: Channel
    serial: int = 0  # simulated keys only
    security: int = 0  # simulated keys only

    @property
    def is_gvlk(self) -> bool:
        return self.channel is Channel.KMS_CLIENT

    @property
    def last5(self) -> str:
        return self.text[-5:]

    @property
    def compact(self) -> str:
        return self.text.replace("-", "")

    def __repr__(self) -> str:  # never leak a whole key into logs or tracebacks
        return f"ProductKey(*****-{self.last5}, {self.product.id}, {self.channel})"


def _group(compact: str) -> str:
    return "-".join(compact[i : i + 5] for i in range(0, KEY_LENGTH, 5))


def _bad(why: str, hint: str | None = None) -> LicensingError:
    return LicensingError(E_INVALID_KEY, N_("invalid product key: {why}", why=why), hint)


def normalise(raw: str) -> str:
    """Upper-case and drop spaces and dashes; check the length. Returns 25 characters."""
    compact = "".join(raw.split()).replace("-", "").upper()
    if len(compact) != KEY_LENGTH:
        raise _bad(
            N_(
                "it has {count} characters, a product key has {length} (five groups of five)",
                count=len(compact),
                length=KEY_LENGTH,
            ),
            N_("Type the key as XXXXX-XXXXX-XXXXX-XXXXX-XXXXX."),
        )
    return compact


def _check_alphabet(compact: str) -> None:
    for pos, ch in enumerate(compact, start=1):
        if ch not in _VALUE:
            raise _bad(
                N_(
                    "character {pos} {ch!r} is not in the product-key alphabet {alphabet}",
                    pos=pos,
                    ch=ch,
                    alphabet=ALPHABET,
                ),
                N_(
                    "Characters outside that alphabet (O, 0, I, 1, S, 5, ...) are usually "
                    "misread ones: compare the key with the one you were given."
                ),
            )


def _weighted_sum(values: list[int]) -> int:
    return sum((i + 1) * v for i, v in enumerate(values)) % _MODULUS


def _near_gvlk(compact: str) -> tuple[Product, Message] | None:
    """A GVLK that ``compact`` misses by one character or one adjacent swap."""
    for gvlk, product in catalog().gvlks().items():
        g = gvlk.replace("-", "")
        diff = [i for i in range(KEY_LENGTH) if g[i] != compact[i]]
        if len(diff) == 1:
            pos = diff[0]
            return product, N_(
                "character {pos} is {typed!r} where it has {wanted!r}",
                pos=pos + 1,
                typed=compact[pos],
                wanted=g[pos],
            )
        if (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and g[diff[0]] == compact[diff[1]]
            and g[diff[1]] == compact[diff[0]]
        ):
            return product, N_(
                "characters {first} and {second} are swapped", first=diff[0] + 1, second=diff[1] + 1
            )
    return None


def parse(raw: str) -> ProductKey:
    """Validate a key typed by a user; raise LicensingError 0xC004F050 saying why it is bad."""
    compact = normalise(raw)
    text = _group(compact)
    gvlk_product = catalog().by_gvlk(text)
    if gvlk_product is not None:
        return ProductKey(text, gvlk_product, Channel.KMS_CLIENT)
    near = _near_gvlk(compact)
    if near is not None:
        product, where = near
        raise _bad(
            N_(
                "it looks like the KMS client key (GVLK) of {product} but {where}",
                product=product.id,
                where=where,
            ),
            N_("The GVLK of {product} is {gvlk}.", product=product.id, gvlk=product.gvlk),
        )
    _check_alphabet(compact)
    values = [_VALUE[ch] for ch in compact]
    if _weighted_sum(values) != 0:
        raise _bad(
            N_("the checksum does not match, so a character is mistyped or two are swapped"),
            N_("Compare the key character by character with the one you were given."),
        )
    number = 0
    for v in values[:_DATA_CHARS]:
        number = number * len(ALPHABET) + v
    security = number & ((1 << SECURITY_BITS) - 1)
    number >>= SECURITY_BITS
    serial = number & ((1 << SERIAL_BITS) - 1)
    number >>= SERIAL_BITS
    channel_code = number & 3
    number >>= 2
    product_index = number & 0xFF
    version = number >> 8
    if version != KEY_VERSION:
        raise _bad(
            N_(
                "key format version {version} is not known (expected {expected})",
                version=version,
                expected=KEY_VERSION,
            )
        )
    channel = _CODE_CHANNELS.get(channel_code)
    if channel is None:
        raise _bad(N_("channel code {code} is not a MAK or KMS host channel", code=channel_code))
    named = catalog().by_index(product_index)
    if named is None:
        raise _bad(
            N_(
                "it names product number {number}, which is not in the catalog",
                number=product_index,
            )
        )
    return ProductKey(text, named, channel, serial, security)


def encode(product: Product, channel: Channel, serial: int, security: int) -> str:
    """Build the text of a simulated MAK or KMS host key (the authority supplies ``security``)."""
    if channel not in _CHANNEL_CODES:
        raise ValueError(f"simulated keys exist for MAK and KMS host channels, not {channel}")
    if not 0 <= serial < 1 << SERIAL_BITS or not 0 <= security < 1 << SECURITY_BITS:
        raise ValueError("serial or security value out of range")
    number = (KEY_VERSION << 8 | product.index) << 2 | _CHANNEL_CODES[channel]
    number = (number << SERIAL_BITS | serial) << SECURITY_BITS | security
    base = len(ALPHABET)
    values = []
    for _ in range(_DATA_CHARS):
        number, digit = divmod(number, base)
        values.append(digit)
    if number:
        raise ValueError("payload does not fit in 23 characters")
    values.reverse()
    partial = _weighted_sum([*values, 0, 0])
    inv25 = pow(25, -1, _MODULUS)
    for x in range(base):
        y = (-partial - 24 * x) * inv25 % _MODULUS
        if y < base:
            values += [x, y]
            break
    return _group("".join(ALPHABET[v] for v in values))
