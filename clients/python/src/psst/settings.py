"""A pydantic-settings source that reads fields from the psst agent (``pip install
'psst-client[pydantic]'``)::

    from pydantic import Field, SecretStr
    from pydantic_settings import BaseSettings
    from psst.settings import PsstSettingsSource

    class Settings(BaseSettings):
        db_user: str = Field(json_schema_extra={"psst": "sm:prod/db#user"})
        db_password: SecretStr = Field(json_schema_extra={"psst": "sm:prod/db#password"})

        @classmethod
        def settings_customise_sources(cls, settings_cls, init_settings, env_settings,
                                       dotenv_settings, file_secret_settings):
            return (init_settings, env_settings, PsstSettingsSource(settings_cls),
                    dotenv_settings, file_secret_settings)

A field's reference is its ``json_schema_extra["psst"]``, or an entry of ``references``
(field name -> reference). All are read in one batch call when the settings are built; any
failure raises its ``PsstError``. The order of the sources decides precedence, as usual.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from ._client import Client
from ._errors import PsstError

__all__ = ["PsstSettingsSource"]


class PsstSettingsSource(PydanticBaseSettingsSource):
    def __init__(
        self,
        settings_cls: type[BaseSettings],
        references: Mapping[str, str] | None = None,
        *,
        client: Client | None = None,
        timeout: float | None = None,
    ) -> None:
        super().__init__(settings_cls)
        self._references: dict[str, str] = {}
        for name, field in settings_cls.model_fields.items():
            extra = field.json_schema_extra
            if isinstance(extra, dict) and isinstance(extra.get("psst"), str):
                self._references[name] = extra["psst"]  # type: ignore[assignment]
        self._references.update(references or {})
        self._client = client
        self._timeout = timeout

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Not used: __call__ reads every field in one batch.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        if not self._references:
            return {}
        own = self._client is None
        client = Client() if self._client is None else self._client
        try:
            results = client.batch_get(list(self._references.values()), timeout=self._timeout)
        finally:
            if own:
                client.close()
        out: dict[str, Any] = {}
        for name, result in zip(self._references, results):
            if isinstance(result, PsstError):
                raise result
            out[name] = result.text()
        return out

    def __repr__(self) -> str:
        return f"PsstSettingsSource(fields={sorted(self._references)!r})"
