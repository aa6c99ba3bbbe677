"""``load_env``: secrets into the environment, as ``psst exec --env`` does for a process."""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING

from ._errors import InvalidArgument, PsstError

if TYPE_CHECKING:
    from ._client import Client

__all__ = ["load_env", "read_env_file"]


def read_env_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``NAME=REF`` lines, in the format of ``psst exec --env-file``: blank lines and lines
    starting with ``#`` are skipped; no inline comments (``#`` selects a JSON key)."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, ref = line.partition("=")
            if not sep or not name.strip() or not ref.strip():
                raise InvalidArgument(f"{os.fspath(path)}:{number}: want NAME=REF")
            out[name.strip()] = ref.strip()
    return out


def load_env(
    variables: Mapping[str, str] | None = None,
    *,
    env_file: str | os.PathLike[str] | None = None,
    client: Client | None = None,
    environ: MutableMapping[str, str] | None = None,
    override: bool = True,
    timeout: float | None = None,
) -> dict[str, str]:
    """Reads secrets into environment variables: ``variables`` maps each NAME to a reference
    (``{"DB_PASSWORD": "sm:prod/db#password"}``), merged over ``env_file``'s ``NAME=REF``
    lines. Every secret is read in one batch call first; if any fails, its ``PsstError`` is
    raised and nothing is set. Values must be UTF-8 text. Sets them in ``environ`` (default
    ``os.environ``; ``override=False`` keeps variables already set) and returns NAME -> value.
    """
    from ._client import Client

    wanted: dict[str, str] = dict(read_env_file(env_file)) if env_file is not None else {}
    wanted.update(variables or {})
    if not wanted:
        return {}
    environ = os.environ if environ is None else environ
    own = client is None
    c = Client() if client is None else client
    try:
        results = c.batch_get(list(wanted.values()), timeout=timeout)
    finally:
        if own:
            c.close()
    values: dict[str, str] = {}
    for name, result in zip(wanted, results):
        if isinstance(result, PsstError):
            raise result
        try:
            values[name] = result.text()
        except UnicodeDecodeError:
            raise InvalidArgument(f"{name}: the secret is not UTF-8 text") from None
    for name, value in values.items():
        if override or name not in environ:
            environ[name] = value
    return values
