"""YAML as people write settings, typed into the settings' dataclasses: numbers like ``1e-9``, dates kept as
text, no anchors or aliases, no duplicate keys; ``--set section.key=value`` overrides."""
from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import functools
import re
import types
import typing
from typing import Any, Mapping

from recjob.config.settings import ConfigError


class YamlError(ValueError):
    """Text that is not valid YAML (PyYAML's error, wrapped: this module imports PyYAML only when parsing, so
    that the executors, which unpickle functions of modules that import this one, need no PyYAML)."""

    def __init__(self, exc: Exception):
        super().__init__(str(exc))
        self.problem = getattr(exc, "problem", None)


@functools.lru_cache(maxsize=1)
def _loader() -> type:
    """YAML as people write settings: ``1e-9`` is a number (YAML 1.1 wants ``1.0e-9``), and dates stay text
    (checked by the settings that hold them, with the key in the message, instead of failing in the parser)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
    def compose_node(self, parent, index):  # noqa: ANN001 (PyYAML's signature)
        # Anchors and aliases are refused before anything is built: a few hundred bytes of nested aliases
        # expand to billions of nodes wherever the value is later walked or printed (a "YAML bomb").
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise yaml.composer.ComposerError(None, None, "anchors and aliases (&name, *name) are not accepted "
                                              "in recjob settings: write the value out", event.start_mark)
        return super(Loader, self).compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, collections.abc.Hashable):
                    continue  # PyYAML's own error follows
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"the key {key!r} appears twice (also at line {seen[key] + 1}): the last one "
                        f"would silently win", key_node.start_mark)
                seen[key] = key_node.start_mark.line
        return super(Loader, self).construct_mapping(node, deep=deep)

    Loader.compose_node = compose_node
    Loader.construct_mapping = construct_mapping
    Loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?(?:[eE][-+]?[0-9]+)
                    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                    |[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$""", re.X),
        list("-+0123456789."))
    return Loader


def _yaml(text: str) -> Any:
    import yaml

    try:
        return yaml.load(text, Loader=_loader())  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise YamlError(exc) from None


def _coerce(value: Any, typ: Any, where: str) -> Any:
    origin = typing.get_origin(typ)
    args = typing.get_args(typ)
    if origin in (typing.Union, types.UnionType) and type(None) in args:  # optional: null means unset
        if value is None:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if typ is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if origin is tuple and typing.get_args(typ)[:1] == (float,):
        if (isinstance(value, (list, tuple)) and value
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)):
            return tuple(float(v) for v in value)
        raise ConfigError(f"{where}: expected a non-empty list of numbers, got {value!r}")
    if origin is tuple and typing.get_args(typ)[:1] == (str,):  # may be empty
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise ConfigError(f"{where}: expected a list of names, got {value!r}")
    if typ is tuple or origin is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) for v in value):
            return tuple(value)
        raise ConfigError(f"{where}: expected a list of integers, got {value!r}")
    if origin is collections.abc.Mapping or typ is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in value.items()}
    if typ in (int, float, str, bool):
        if typ is int and isinstance(value, bool) or not isinstance(value, typ):
            raise ConfigError(f"{where}: expected {typ.__name__}, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {typ}")


def _build(cls: type, values: Mapping[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(where + k for k in unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        typ = hints[name]
        if dataclasses.is_dataclass(typ):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{where}{name}: expected a section (mapping), got {value!r}")
            kwargs[name] = _build(typ, value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, typ, where + name)
    return cls(**kwargs)


def _merge(base: dict, extra: Mapping) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and key != "conf":
            out[key] = _merge(out[key], value)
        elif key == "conf" and isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def parse_overrides(items: list[str] | None) -> dict:
    """Turn ``["train.factors=64", "sample.start=2017-01-01"]`` into a nested dict (values parsed as YAML)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.factors=64")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if parts[0] == "spark" and len(parts) > 2 and parts[1] == "conf":
            parts = ["spark", "conf", ".".join(parts[2:])]  # spark.conf.spark.sql.x=1
        try:
            value = _yaml(raw) if raw.strip() else ""
        except YamlError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc.problem or exc})") from None
        if parts[-1] in ("start", "end") and isinstance(value, dt.date):
            value = value.isoformat()
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _dates_to_str(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _dates_to_str(v) for k, v in node.items()}
    if isinstance(node, (dt.date, dt.datetime)):
        return node.isoformat()
    return node

