"""One typed configuration object, loaded once from YAML and passed down.

Every value can be overridden from the command line with ``--set section.key=value``. Library code never reads
files or environment variables itself; it receives a ``Config``. The parts, by concern: ``settings`` (the
sections and their defaults), ``parsing`` (YAML and ``--set``), ``checks`` (what a valid configuration is),
``secrets`` (values from the environment), ``reference`` (the settings as documentation).
PyYAML is imported only when a file or ``--set`` value is parsed: the executors import modules that import this
package, and their Python has no PyYAML.
"""
from __future__ import annotations

import dataclasses
import os
import stat
from typing import Mapping

from recjob import models
from recjob.config.checks import IDENTIFIER, MAX_TOP_N, OPTIMIZERS, _check, local_path  # noqa: F401
from recjob.config.parsing import YamlError, _build, _dates_to_str, _merge, _yaml, parse_overrides  # noqa: F401
from recjob.config.secrets import (ENV_REF, JDBC_DRIVER, METASTORE_CONF, METASTORES,  # noqa: F401
                                   SECRET_KEY, _resolve_secrets)
from recjob.config.settings import (Config, ConfigError, EvaluateConfig, GateConfig, IngestConfig,  # noqa: F401
                                    InputConfig, NeighboursConfig, PublishConfig, RetentionConfig, SampleConfig, ScoreConfig, ShardsConfig,
                                    SparkConfig, TrainConfig)

MAX_CONFIG_BYTES = 1 << 20  # a config file larger than this is refused unread


def load(path: str | None = None, overrides: list[str] | None = None,
         environ: Mapping[str, str] | None = None, resolve_env: bool = True) -> Config:
    """Load a YAML file (optional), apply ``key=value`` overrides, check and return the config.
    ``spark.conf`` values written ``${VAR}`` are read from ``environ`` (default: the process environment);
    ``resolve_env=False`` leaves them, and the serving credentials, unresolved (for reading the settings only)."""
    values: dict = {}
    if path:
        try:
            kind = os.stat(path)  # before opening: opening a FIFO waits for a writer
            if not stat.S_ISREG(kind.st_mode):  # a folder, /dev/zero or a FIFO would fail late or never
                raise ConfigError(f"config file {path} is not a regular file")
            with open(path, "rb") as fh:
                if kind.st_size > MAX_CONFIG_BYTES:
                    raise ConfigError(f"config file {path} holds {kind.st_size:,} bytes; a recjob config is a few "
                                      f"kilobytes (at most {MAX_CONFIG_BYTES:,})")
                text = fh.read(MAX_CONFIG_BYTES + 1).decode("utf-8")
            values = _yaml(text) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except IsADirectoryError:
            raise ConfigError(f"config file {path} is not a regular file") from None
        except PermissionError:
            raise ConfigError(f"config file {path} cannot be read (permission denied)") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        except YamlError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
    values = _merge(_dates_to_str(values), parse_overrides(overrides))
    values, kinds = _kind_settings(values)
    cfg = _build(Config, values, "")
    cfg = _check(dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, kinds=kinds)))
    if cfg.data_dir.startswith("file:"):  # a local folder: Derby and the Java options need a plain path
        cfg = dataclasses.replace(cfg, data_dir=local_path(cfg.data_dir))
    if not resolve_env:
        return _with_model_defaults(cfg)
    environ = os.environ if environ is None else environ
    conf = {**METASTORE_CONF.get(cfg.spark.metastore, {}), **cfg.spark.conf}
    unset = [ref for key, value in conf.items() if key not in cfg.spark.conf
             for ref in ENV_REF.findall(value) if ref not in environ]
    if unset:
        raise ConfigError(f"spark.metastore={cfg.spark.metastore} needs {', '.join(unset)} in the environment (the "
                          f"Airflow connection's fields, or `source <(deploy/services.sh env)` for the local one)")
    conf = _resolve_secrets(conf, environ)
    if cfg.publish.jdbc_url:
        missing = [v for v in ("RECJOB_SERVING_USER", "RECJOB_SERVING_PASSWORD") if v not in environ]
        if missing:
            raise ConfigError(f"publish.jdbc_url is set: {' and '.join(missing)} must be set in the environment")
        cfg = dataclasses.replace(cfg, publish=dataclasses.replace(
            cfg.publish, jdbc_user=environ["RECJOB_SERVING_USER"], jdbc_password=environ["RECJOB_SERVING_PASSWORD"]))
    cfg = dataclasses.replace(cfg, spark=dataclasses.replace(cfg.spark, conf=conf))
    return _with_model_defaults(cfg)


def _kind_settings(values: dict) -> tuple[dict, dict]:
    """Take each kind's own section (``train.<kind>``) out of ``values`` and build its settings; every kind of the
    registry gets its settings (its defaults where none are given), so a file may hold several kinds'."""
    train = values.get("train")
    if not isinstance(train, Mapping):
        return values, {name: kind.Settings() for name, kind in models.KINDS.items()}
    train = dict(train)
    if "kinds" in train:
        raise ConfigError("unknown key train.kinds; a kind's own settings are given as train.<kind>.<key>")
    owners = {}
    for name, kind in models.KINDS.items():
        for f in dataclasses.fields(kind.Settings):
            owners.setdefault(f.name, []).append(name)
    misplaced = [k for k in train if k in owners and k not in models.KINDS]
    if misplaced:
        raise ConfigError("; ".join(f"train.{k} is a setting of the kind(s) {', '.join(owners[k])}: write it "
                                    f"train.<kind>.{k} (e.g. train.{owners[k][0]}.{k})" for k in misplaced))
    kinds = {}
    for name, kind in models.KINDS.items():
        given = train.pop(name, None) or {}
        if not isinstance(given, Mapping):
            raise ConfigError(f"train.{name}: expected a section (mapping) of {name}'s own settings, got {given!r}")
        kinds[name] = _build(kind.Settings, given, f"train.{name}.")
    return {**values, "train": train}, kinds


def _with_model_defaults(cfg: Config) -> Config:
    """The settings left unset (None) take the model kind's defaults."""
    t = cfg.train
    resolved = {k: v for k, v in models.get(t.model).settings().items() if getattr(t, k) is None}
    return dataclasses.replace(cfg, train=dataclasses.replace(t, **resolved))
