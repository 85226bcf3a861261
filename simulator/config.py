"""Parameters of the synthetic world, validated before anything is generated.

Impossible values (negative rates, shares outside [0, 1] or summing past 1, negative costs or
budgets) raise a ConfigError that names the parameter.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from policies.errors import ConfigError, first_problem

__all__ = ["DEFAULT_ACTIONS", "ActionEffect", "WorldConfig", "scaled_effects", "validated"]

Share = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]


class ActionEffect(BaseModel):
    """One action of the simulated catalog and the shares of its true response types.

    Among customers who would churn without contact, a share ``persuadable_share`` of the whole
    base is saved by this action (the rest of them are lost causes); among those who would stay,
    ``sleeping_dog_share`` of the whole base is driven away (the rest are sure things). Who they
    are depends on features through ``drivers`` (latent name -> weight), not on churn risk alone.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    channel: str = Field(pattern=r"^(phone|email|in_app)$")
    cost_fixed: NonNegative = 0.0
    cost_pct_of_contract: Share = 0.0
    persuadable_share: Share
    sleeping_dog_share: Share
    persuadable_drivers: dict[str, float] = Field(default_factory=dict)
    sleeping_dog_drivers: dict[str, float] = Field(default_factory=dict)
    expansion_drivers: dict[str, float] = Field(default_factory=dict)
    expansion_rate: Share = 0.0


DEFAULT_ACTIONS: tuple[ActionEffect, ...] = (
    ActionEffect(
        name="account_manager_call",
        channel="phone",
        cost_fixed=200.0,
        persuadable_share=0.06,
        sleeping_dog_share=0.015,
        # A human call rescues unhappy, valuable accounts that are not already gone, and annoys
        # small accounts that were happy as they were.
        persuadable_drivers={"dissatisfaction": 1.0, "log_value": 1.2, "risk": -0.9},
        sleeping_dog_drivers={"satisfaction": 0.8, "log_value": -1.0},
    ),
    ActionEffect(
        name="retention_email",
        channel="email",
        cost_fixed=5.0,
        persuadable_share=0.02,
        sleeping_dog_share=0.004,
        persuadable_drivers={"engagement": 1.4},
    ),
    ActionEffect(
        name="discount_offer",
        channel="email",
        cost_pct_of_contract=0.15,
        persuadable_share=0.05,
        sleeping_dog_share=0.02,
        # Price-sensitive accounts stay for a discount; happy ones start to re-evaluate.
        persuadable_drivers={"price_sensitivity": 1.6, "risk": -0.4},
        sleeping_dog_drivers={"satisfaction": 1.3},
    ),
    ActionEffect(
        name="upsell_offer",
        channel="in_app",
        cost_fixed=20.0,
        persuadable_share=0.003,
        sleeping_dog_share=0.015,
        sleeping_dog_drivers={"dissatisfaction": 1.2},
        expansion_drivers={"growth_intent": 1.5, "engagement": 0.5},
        expansion_rate=0.08,
    ),
    ActionEffect(
        name="success_webinar",
        channel="email",
        cost_fixed=40.0,
        persuadable_share=0.03,
        sleeping_dog_share=0.005,
        persuadable_drivers={"low_adoption": 1.5, "engagement": 0.4, "risk": -1.0},
    ),
)


def scaled_effects(
    factor: float, actions: tuple[ActionEffect, ...] = DEFAULT_ACTIONS
) -> tuple[ActionEffect, ...]:
    """The actions with ``factor`` times their persuadable and sleeping-dog shares: a world where
    the policy's choices matter more (e.g. to test that an evaluation can tell policies apart)."""
    return tuple(
        a.model_copy(
            update={
                "persuadable_share": a.persuadable_share * factor,
                "sleeping_dog_share": a.sleeping_dog_share * factor,
            }
        )
        for a in actions
    )


class WorldConfig(BaseModel):
    """The whole world; every default is documented in simulator/README.md."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n_customers: int = Field(default=20_000, ge=10, le=20_000_000)
    seed: int = Field(default=7, ge=0)
    baseline_churn_rate: float = Field(default=0.18, gt=0.0, lt=1.0)
    plan_shares: dict[str, Share] = Field(
        default_factory=lambda: {"starter": 0.55, "growth": 0.33, "enterprise": 0.12}
    )
    price_per_seat: dict[str, NonNegative] = Field(
        default_factory=lambda: {"starter": 180.0, "growth": 420.0, "enterprise": 900.0}
    )
    median_seats: dict[str, NonNegative] = Field(
        default_factory=lambda: {"starter": 4.0, "growth": 20.0, "enterprise": 120.0}
    )
    consent_rates: dict[str, Share] = Field(
        default_factory=lambda: {"email": 0.92, "phone": 0.65, "in_app": 1.0}
    )
    base_expansion_rate: Share = 0.02
    actions: tuple[ActionEffect, ...] = DEFAULT_ACTIONS
    # Live stream: mean product sessions per customer per day at average engagement.
    sessions_per_day: NonNegative = 1.5
    history_days: int = Field(default=730, ge=30, le=3650)
    # Extra standard deviation on each latent trait where it drives an observed feature; the
    # true effects still follow the traits themselves, so the features say less (0: default).
    observation_noise: NonNegative = 0.0
    # Weight of the unobserved churn risk in the legacy rule's warning score (in units of the
    # score's spread): above 0 the legacy log is confounded by what no feature shows.
    legacy_confounding: NonNegative = 0.0

    @model_validator(mode="after")
    def _shares_are_consistent(self) -> WorldConfig:
        total = sum(self.plan_shares.values())
        if abs(total - 1.0) > 1e-9:
            raise ValueError(f"plan_shares must sum to 1 (got {total:.4f})")
        if set(self.plan_shares) != set(self.price_per_seat) or set(self.plan_shares) != set(
            self.median_seats
        ):
            raise ValueError(
                "plan_shares, price_per_seat and median_seats must name the same plans"
            )
        names = [a.name for a in self.actions]
        if len(set(names)) != len(names) or "do_nothing" in names:
            raise ValueError("action names must be unique and must not include do_nothing")
        for action in self.actions:
            if action.persuadable_share >= self.baseline_churn_rate:
                raise ValueError(
                    f"actions[{action.name}].persuadable_share must be below baseline_churn_rate"
                )
            if action.sleeping_dog_share >= 1.0 - self.baseline_churn_rate:
                raise ValueError(
                    f"actions[{action.name}].sleeping_dog_share must be below the retention rate"
                )
        return self

    @property
    def action_names(self) -> tuple[str, ...]:
        """All actions, ``do_nothing`` first (column 0 of every per-action array)."""
        return ("do_nothing", *(a.name for a in self.actions))


def validated(**params: object) -> WorldConfig:
    """A WorldConfig from keyword parameters; a bad one raises ConfigError naming the parameter."""
    try:
        return WorldConfig.model_validate(params)
    except ValidationError as exc:
        where, message, _ = first_problem(exc, "world")
        raise ConfigError(f"invalid simulator parameter {where}: {message}") from None
