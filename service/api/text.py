"""Text the database can store: PostgreSQL refuses the NUL character in text and JSON values, so
requests holding one are refused at the edge (422) before anything is written."""

from __future__ import annotations

import re
from typing import Any

from pydantic import AfterValidator, BaseModel, ConfigDict, model_validator

NUL_MESSAGE = "text may not contain the NUL character (\\u0000)"


def _refuse_nul(value: Any) -> Any:
    """``value`` unchanged, or ValueError when a string in it (keys of mappings included) holds
    a NUL."""
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError(NUL_MESSAGE)
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_nul(key)
            _refuse_nul(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _refuse_nul(item)
    return value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def without_control_characters(text: str) -> str:
    return _CONTROL.sub("", text)


# For a form field or parameter: ``Annotated[str | None, Form(...), StorableText]``.
StorableText = AfterValidator(_refuse_nul)

# Characters that change what a terminal, a log or a page shows instead of being shown: the C0
# and C1 controls and DEL (escape sequences, line breaks that forge table rows or log lines), and
# the bidirectional overrides and isolates that reorder the text around them.
_UNSHOWN = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_UNSHOWN_IN_TEXT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
ONE_LINE_MESSAGE = (
    "may not hold control characters (line breaks, tabs, escape sequences) or bidirectional "
    "overrides"
)
FREE_TEXT_MESSAGE = (
    "may not hold control characters other than line breaks and tabs (escape sequences), or "
    "bidirectional overrides"
)


def one_line(value: str | None) -> str | None:
    """A name, an id or a label: ValueError when it holds anything but shown characters."""
    if value is not None and _UNSHOWN.search(value):
        raise ValueError(ONE_LINE_MESSAGE)
    return value


def free_text(value: str | None) -> str | None:
    """A reason, a note, a prompt: line breaks and tabs allowed, other controls refused."""
    if value is not None and _UNSHOWN_IN_TEXT.search(value):
        raise ValueError(FREE_TEXT_MESSAGE)
    return value


def written_out(text: str) -> str:
    """``text`` with each character ``one_line`` refuses written as ``\\xNN`` or ``\\uNNNN``,
    for showing text from outside where such characters would act instead of being seen."""
    return _UNSHOWN.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    code = ord(found.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def name_text(value: str) -> str:
    """A name: trimmed, more than white space, on one line."""
    value = value.strip()
    if not value:
        raise ValueError("must hold more than white space")
    one_line(value)
    return value


# ``Annotated[str | None, Form(...), StorableText, OneLine]`` and the like.
OneLine = AfterValidator(one_line)
FreeText = AfterValidator(free_text)
Name = AfterValidator(name_text)

TITLE_MAX_CHARS = 500


def clean_title(value: str | None) -> str | None:
    """An artwork's title, trimmed; None stays None (no title). ValueError for one that is only
    white space, too long, or holds a NUL."""
    if value is None:
        return None
    value = _refuse_nul(value).strip()
    if not value:
        raise ValueError("a title must hold more than white space (leave it out for none)")
    if len(value) > TITLE_MAX_CHARS:
        raise ValueError(f"a title may be at most {TITLE_MAX_CHARS} characters")
    if _UNSHOWN.search(value):
        raise ValueError(f"a title {ONE_LINE_MESSAGE}")
    return value


# For a title, in a form or a body: ``Annotated[str | None, ..., Title]``.
Title = AfterValidator(clean_title)


class RequestModel(BaseModel):
    """A request body: every string in it, however nested, must be storable, and numbers
    finite (NaN and infinities are refused)."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        return _refuse_nul(data)
