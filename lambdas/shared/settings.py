"""Each Lambda's configuration: a pydantic-settings class per function, read from the
environment once per container (cold start).

A field's alias is its variable's name. The CDK stack builds each function's `environment=`
through the same class (`LambdaSettings.environment`), so the stack and the Lambdas cannot
disagree on a name, and a value the Lambda would refuse fails synth instead of a cold start.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal, Self

from pydantic import (
    BeforeValidator,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SET_BY_THE_STACK = (
    "The CDK stack sets these variables (infra_cdk/lifecycle_functions.py, values from "
    "cdk.json's context.cvstack): fix cdk.json if need be and redeploy (npx cdk deploy) "
    "rather than edit the function's configuration by hand."
)


def _comma_separated(value: object) -> object:
    """'a, b,' -> ('a', 'b'); blanks are dropped, so '' is the empty list."""
    if isinstance(value, str):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
CommaList = Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_separated)]
PositiveFloat = Annotated[float, Field(gt=0)]
PositiveInt = Annotated[int, Field(gt=0)]


class SettingsError(RuntimeError):
    """A Lambda's environment lacks a variable or holds a value it refuses."""


class LambdaSettings(BaseSettings):
    """Base class: every field has an alias, the exact (case-sensitive) variable name."""

    model_config = SettingsConfigDict(case_sensitive=True, frozen=True, extra="forbid")
    function: ClassVar[str]  # the lambdas/<function> folder, for messages

    @classmethod
    def load(cls) -> Self:
        """The settings from the environment, read once per container; `SettingsError` names
        each bad variable and what was wrong."""
        try:
            return cls.settings_cached()
        except ValidationError as error:
            raise SettingsError(
                f"{cls.function} cannot start: {'; '.join(problems(error))}. {SET_BY_THE_STACK}"
            ) from None

    @classmethod
    def environment(cls, **values: object) -> dict[str, str]:
        """The `environment=` the stack gives this function, from values by field name:
        every variable (defaults included), as text the Lambda reads back, checked as it will."""
        fields = cls.model_fields
        unknown = sorted(values.keys() - fields.keys())
        missing = sorted(n for n, f in fields.items() if f.is_required() and n not in values)
        if unknown or missing:
            raise TypeError(
                f"{cls.__name__}.environment(): unknown fields {unknown}, missing {missing}"
            )
        variables = {
            str(field.alias): environment_text(values.get(name, field.default))
            for name, field in fields.items()
        }
        try:
            cls.model_validate(variables)  # every field is given, so nothing comes from os.environ
        except ValidationError as error:
            raise ValueError(
                f"the stack would give {cls.function} an environment it refuses: "
                f"{'; '.join(problems(error))}"
            ) from None
        return variables


def environment_text(value: object) -> str:
    """A setting as an environment variable's text: lists comma-separated, whole numbers
    without '.0'."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple | list):
        return ",".join(str(item) for item in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return repr(value)
    raise TypeError(f"no environment text for {value!r}")


def problems(error: ValidationError) -> list[str]:
    """One line per bad variable: its name, its value and what was wrong."""
    lines = []
    for detail in error.errors():
        name = detail["loc"][0] if detail["loc"] else None
        if name is None:
            lines.append(str(detail["ctx"]["error"]) if "ctx" in detail else detail["msg"])
        elif detail["type"] == "missing":
            lines.append(f"environment variable {name} is not set")
        elif detail["type"] == "string_too_short":
            lines.append(f"environment variable {name} is empty")
        else:
            lines.append(f"environment variable {name}={detail['input']!r}: {detail['msg']}")
    return lines


Stripped = Annotated[str, StringConstraints(strip_whitespace=True)]


class InstanceSettings(LambdaSettings):
    """What every function needs: the mode, and the GPU instance (single mode, the default) or
    the Auto Scaling group (fleet mode)."""

    mode: Literal["single", "fleet"] = Field(default="single", alias="MODE")
    instance_id: Stripped = Field(default="", alias="INSTANCE_ID")
    fleet_group_name: Stripped = Field(default="", alias="FLEET_GROUP_NAME")

    @model_validator(mode="after")
    def _target_of_the_mode(self) -> Self:
        """Single mode needs INSTANCE_ID, fleet mode FLEET_GROUP_NAME; neither takes both."""
        targets = {
            "single": ("INSTANCE_ID", self.instance_id),
            "fleet": ("FLEET_GROUP_NAME", self.fleet_group_name),
        }
        wanted, value = targets[self.mode]
        other, other_value = targets["fleet" if self.mode == "single" else "single"]
        if not value:
            raise ValueError(f"environment variable {wanted} is not set (MODE={self.mode})")
        if other_value:
            raise ValueError(
                f"environment variable {other}={other_value!r} is set, but MODE={self.mode} "
                f"uses {wanted} only"
            )
        return self


class ApiSettings(InstanceSettings):
    """The API functions: the front door's host and the other origins that get CORS headers
    (empty: only the stack's own page, which calls on its own origin)."""

    endpoint_host: NonEmpty = Field(alias="ENDPOINT_HOST")
    allowed_origins: CommaList = Field(default=(), alias="ALLOWED_ORIGINS")
