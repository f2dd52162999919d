"""The settings as documentation, generated from their definitions (``recjob/config/settings.py``): each
section's docstring, each field's default and the comment on its line or the comment lines just above it.
``recjob settings`` prints the full reference (docs/configuration.md), ``recjob settings --sections`` the
README's table of sections; tests check that both files hold what these print."""
from __future__ import annotations

import dataclasses
import inspect
import re
from typing import Any

from recjob.config.settings import Config

FIELD = re.compile(r"^\s{4}(\w+)\s*:\s*[^=#]+?(?:=.*?)?(?:\s+#\s?(.*))?$")
TOP = "where everything lives"


def _comments(cls: type) -> dict[str, str]:
    """Field name -> its comment (the inline one, after the comment lines just above the field), the class's
    bases' fields included."""
    out, above = {}, []
    for base in reversed(cls.__mro__[1:]):
        if dataclasses.is_dataclass(base):
            out.update(_comments(base))
    for line in inspect.getsource(cls).splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        found = FIELD.match(line)
        if found and not stripped.startswith(("def ", "@", '"""')):
            out[found.group(1)] = " ".join(above + ([found.group(2).strip()] if found.group(2) else []))
        above = []
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _shown(value: Any) -> str:
    if value is None:
        return "unset (the model kind's default)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {v}" for k, v in value.items()) + "}"
    if value == "":
        return '""'
    return str(value)


def _shown_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("hidden") and (f.repr or f.compare)]


def sections() -> list[tuple[str, type | None, list[dataclasses.Field]]]:
    """(section name, its dataclass, its fields); the top-level settings first, as section '', and after
    ``train`` each model kind's own settings (``train.<kind>``) as the registry declares them."""
    from recjob import models

    top = [f for f in dataclasses.fields(Config) if not dataclasses.is_dataclass(_default(f))]
    out: list = [("", None, top)]
    for f in dataclasses.fields(Config):
        value = _default(f)
        if dataclasses.is_dataclass(value):
            out.append((f.name, type(value), _shown_fields(type(value))))
            if f.name == "train":
                out += [(f"train.{name}", kind.Settings, _shown_fields(kind.Settings))
                        for name, kind in models.KINDS.items() if dataclasses.fields(kind.Settings)]
    return out


def _doc(cls: type | None) -> str:
    if cls is None:
        return TOP
    return " ".join((inspect.getdoc(cls) or "").split())


def sections_table() -> str:
    """The README's table: each section, what it sets, its keys."""
    rows = ["| section | what it sets | keys |", "|---|---|---|"]
    for name, cls, fields in sections():
        keys = ", ".join(f"`{f.name}`" for f in fields)
        rows.append(f"| {f'`{name}`' if name else '(top)'} | {_doc(cls)} | {keys} |")
    return "\n".join(rows)


def full_reference() -> str:
    """docs/configuration.md's reference: every key with its default and meaning, section by section."""
    comments = {None: _comments(Config)}
    out = []
    for name, cls, fields in sections():
        notes = _comments(cls) if cls is not None else comments[None]
        out += [f"### {f'`{name}`' if name else 'Top level'}", "", _doc(cls), "",
                "| key | default | meaning |", "|---|---|---|"]
        for f in fields:
            key = f"{name}.{f.name}" if name else f.name
            meaning = notes.get(f.name, "").replace("|", "\\|")
            out.append(f"| `{key}` | `{_shown(_default(f))}` | {meaning} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


