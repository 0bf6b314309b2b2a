"""Money on the wire: integer minor units with a currency, never a float."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Money(BaseModel):
    """An amount in minor units (pence) of a currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount_minor: int = Field(description="Amount in minor units, e.g. pence.", examples=[900000])
    currency: Literal["GBP"] = Field(default="GBP", description="ISO 4217 currency code.")
