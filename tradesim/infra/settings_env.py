"""The TRADESIM_* settings of the deployed services and jobs, checked against the settings object at synth time:
a misspelt section or key fails `tradesim infra synth`, not a task starting in the cloud."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from tradesim.settings import Settings, settings_to_env

#: section → key → value (or a top-level key → value), as in tradesim.toml; values may hold CDK tokens
Values = Mapping[str, Any]


class _Given(Settings):
    """Settings from the given values only: nothing from this machine's environment or tradesim.toml."""

    model_config = {**Settings.model_config, "toml_file": None}

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   **others: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def cloud_settings(values: Values) -> Settings:
    """What a deployed process that reads exactly these values sees; raises ValidationError on a bad one."""
    return _Given(**{name: dict(value) if isinstance(value, Mapping) else value for name, value in values.items()})


def env_vars(values: Values) -> dict[str, str]:
    """The values as the TRADESIM_* variables a process is given (encoded as the local stack encodes them)."""
    every = settings_to_env(cloud_settings(values))
    names = [f"TRADESIM_{name.upper()}__{key.upper()}" for name, value in values.items() if isinstance(value, Mapping)
             for key in value]
    return {name: every[name] for name in
            names + [f"TRADESIM_{name.upper()}" for name, value in values.items() if not isinstance(value, Mapping)]}
