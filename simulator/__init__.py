"""A synthetic B2B SaaS customer world with known counterfactuals: customers, engagement events,
each action's true heterogeneous effect, outcomes, and the ground truth that scores any policy."""
