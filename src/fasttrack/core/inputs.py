"""Input rules that the OpenAPI document states exactly: each is enforced and described by
one annotation, so validation and the document cannot drift apart.

Patterns are JSON Schema (ECMA-262) regular expressions written in the subset that Python's
`re` reads the same way.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

# What `strip_whitespace` removes: pydantic trims like Rust's `str::trim`, i.e. the Unicode
# White_Space characters (Python's `str.strip()` would remove U+001C..U+001F as well).
WHITESPACE: Final = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
NUL: Final = "\x00"


def _char_class(characters: Iterable[str]) -> str:
    """The inside of a regex character class naming `characters`, runs written as ranges."""
    points = sorted({ord(character) for character in characters})
    runs: list[tuple[int, int]] = []
    for point in points:
        if runs and runs[-1][1] == point - 1:
            runs[-1] = (runs[-1][0], point)
        else:
            runs.append((point, point))
    return "".join(
        f"\\u{first:04x}" if first == last else f"\\u{first:04x}-\\u{last:04x}"
        for first, last in runs
    )


_SPACE: Final = _char_class(WHITESPACE)
_NOT_NUL: Final = f"[^{_char_class(NUL)}]"
_NOT_SPACE_OR_NUL: Final = f"[^{_SPACE}{_char_class(NUL)}]"
NUL_FREE_PATTERN: Final = f"^{_NOT_NUL}*$"


def stripped_text_pattern(max_length: int) -> str:
    """Any surrounding whitespace around 1 to `max_length` characters that start and end with
    something else; U+0000 nowhere."""
    more = f"(?:{_NOT_NUL}{{0,{max_length - 2}}}{_NOT_SPACE_OR_NUL})?" if max_length > 1 else ""
    return f"^[{_SPACE}]*{_NOT_SPACE_OR_NUL}{more}[{_SPACE}]*$"


def _without_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000 (the driver fails the whole statement); refusing it
    # in the input models keeps every backend alike and the answer a 422, not a 500.
    if NUL in value:
        raise ValueError("must not contain the NUL character (U+0000)")
    return value


@dataclass(frozen=True, slots=True)
class NoNul:
    """Refuses U+0000 in a string, and says so as the field's `pattern`."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(_without_nul, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["pattern"] = NUL_FREE_PATTERN
        return json_schema


# Metadata for every free-text input field that is kept as sent: Annotated[str, ..., NO_NUL].
NO_NUL: Final = NoNul()


@dataclass(frozen=True, slots=True)
class StrippedText:
    """A string kept without its surrounding whitespace: 1 to `max_length` characters must
    remain, and none may be U+0000.

    The limits apply to what remains, so the JSON Schema states them with a pattern alone:
    minLength/maxLength would count the whitespace too.
    """

    max_length: int

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        stripped = core_schema.str_schema(
            strip_whitespace=True, min_length=1, max_length=self.max_length
        )
        return core_schema.no_info_after_validator_function(_without_nul, stripped)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "type": "string",
            "pattern": stripped_text_pattern(self.max_length),
            "description": f"1 to {self.max_length} characters, not counting the leading and "
            "trailing whitespace, which is removed.",
        }


@dataclass(frozen=True, slots=True)
class Utf8Bytes:
    """A string of `minimum` to `maximum` bytes when UTF-8 encoded.

    JSON Schema counts characters only, so the byte bounds are stated as the `x-utf8-bytes`
    extension, next to the character bounds they imply (1 to 4 bytes a character), which
    are checked first.
    """

    minimum: int
    maximum: int

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        characters = core_schema.str_schema(
            min_length=-(-self.minimum // 4), max_length=self.maximum
        )
        return core_schema.no_info_after_validator_function(self._check, characters)

    def _check(self, value: str) -> str:
        if not self.minimum <= len(value.encode()) <= self.maximum:
            raise ValueError(
                f"must be {self.minimum} to {self.maximum} bytes long when UTF-8 encoded"
            )
        return value

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        json_schema["x-utf8-bytes"] = {"minimum": self.minimum, "maximum": self.maximum}
        return json_schema


def whole_number(value: object) -> object:
    """A BeforeValidator for a strict int: JSON Schema's `integer` admits 1.0 as it does 1,
    and neither "1" nor true (which pydantic's lax mode would take)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
