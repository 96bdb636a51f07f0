"""Reading one mapping of a city config key by key, so that every error names the config file and the key's full name.

:class:`Section` checks each value's type and allowed range, resolves relative paths against the config file's folder
(and checks that the files exist, unless told not to), expands glob patterns, and rejects keys nobody read, so a
misspelt key fails up front instead of being silently ignored. :mod:`musecl.opendata.config` builds the config
dataclasses with it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from musecl.opendata.report import BuildError

_REQUIRED = object()


class ConfigError(BuildError):
    """The city config is malformed; the message names the config file and the key."""


class Section:
    """A mapping being read key by key, remembering its dotted path so errors can name the key."""

    def __init__(self, data: Any, path: str, source: str, base_dir: Path, check_files: bool = True) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: key '{path or '<top level>'}': expected a mapping, got {type(data).__name__}")
        self.data = dict(data)
        self.path = path
        self.source = source
        self.base_dir = base_dir
        self.check_files = check_files
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: key '{self.key(name)}': {message}")

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def get(self, name: str, default: Any = _REQUIRED) -> Any:
        self.used.add(name)
        if self.data.get(name) is None:
            if default is _REQUIRED:
                raise self.error(name, "missing (required)")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.error(name, f"expected a string, got {value!r}")
        return str(value)

    def int(self, name: str, default: Any = _REQUIRED, minimum: int | None = None) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"expected an integer >= {minimum}, got {value}")
        return int(value)

    def float(self, name: str, default: Any = _REQUIRED, positive: bool = False) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"expected a number, got {value!r}")
        if positive and not value > 0:
            raise self.error(name, f"expected a positive number, got {value}")
        return float(value)

    def bool(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {value!r}")
        return value

    def choice(self, name: str, options: tuple[str, ...], default: Any = _REQUIRED) -> str:
        value = self.get(name, default)
        if value not in options:
            raise self.error(name, f"expected one of {list(options)}, got {value!r}")
        return str(value)

    def file(self, name: str, default: Any = _REQUIRED, folder: bool = False) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str):
            raise self.error(name, f"expected a path, got {value!r}")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else (self.base_dir / path)
        if not self.check_files:
            return path
        if folder and not path.is_dir():
            raise self.error(name, f"folder {path} does not exist")
        if not folder and not path.is_file():
            raise self.error(name, f"file {path} does not exist")
        return path

    def files(self, name: str) -> tuple[Path, ...]:
        """One path, a list of paths, or a glob pattern (e.g. 'yellow_tripdata_2015-*.parquet'), sorted."""
        value = self.get(name)
        patterns = [value] if isinstance(value, str) else value
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise self.error(name, f"expected a path, a glob pattern or a list of them, got {value!r}")
        out: list[Path] = []
        for pattern in patterns:
            path = Path(pattern).expanduser()
            path = path if path.is_absolute() else self.base_dir / path
            if not self.check_files:
                out.append(path)
            elif any(ch in pattern for ch in "*?["):
                matches = sorted(path.parent.glob(path.name))
                if not matches:
                    raise self.error(name, f"pattern {path} matches no file")
                out.extend(matches)
            elif path.is_file():
                out.append(path)
            else:
                raise self.error(name, f"file {path} does not exist")
        return tuple(out)

    def crs(self, name: str = "crs") -> str | None:
        """An optional `crs` value: WGS84 (None), GCJ-02, BD-09 or any CRS pyproj reads (musecl.opendata.crs)."""
        from musecl.opendata.crs import check_crs, is_wgs84

        value = self.str(name, None)
        if value is None or is_wgs84(value):
            return None
        try:
            return check_crs(value)
        except ValueError as err:
            raise self.error(name, str(err)) from err

    def str_list(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            raise self.error(name, f"expected a list of strings, got {value!r}")
        return tuple(str(v) for v in value)

    def section(self, name: str, required: bool = False) -> "Section | None":
        self.used.add(name)
        if self.data.get(name) is None:
            if required:
                raise self.error(name, "missing (required section)")
            return None
        return Section(self.data[name], self.key(name), self.source, self.base_dir, self.check_files)

    def finish(self) -> None:
        """Reject keys nobody read: a misspelt key must not be silently ignored."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = sorted(self.used)
            raise ConfigError(
                f"{self.source}: unknown key(s) {[self.key(k) for k in unknown]} (known here: {known})"
            )
