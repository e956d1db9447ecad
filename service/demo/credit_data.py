"""Synthetic credit-risk applications with realistic feature names and a known ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd

HOME_OWNERSHIP = ("rent", "own", "mortgage", "other")
PURPOSE = ("debt_consolidation", "credit_card", "home_improvement", "car", "medical",
           "small_business", "education", "other")
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2")
EMPLOYMENT = ("salaried", "self_employed", "contractor", "retired", "unemployed")


def _zip_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    pool = np.array([f"{z:05d}" for z in rng.choice(np.arange(10000, 99999), 60, replace=False)])
    weights = rng.dirichlet(np.full(len(pool), 0.8))
    return rng.choice(pool, n, p=weights)


def make_applications(n: int, *, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Draw `n` applications; `shift` > 0 moves debt and utilisation up (drift for demos)."""
    rng = np.random.default_rng(seed)
    age = np.clip(rng.normal(41, 12, n), 18, 85).round()
    income = np.round(np.exp(rng.normal(10.8, 0.45, n)) * (1 + 0.004 * (age - 40)), -2)
    employment_years = np.clip(rng.gamma(2.0, 3.0, n), 0, age - 16).round(1)
    credit_history_months = np.clip(rng.normal((age - 18) * 9, 30, n), 0, None).round()
    credit_limit = np.round(income * rng.uniform(0.1, 0.6, n), -2)
    utilization = np.clip(rng.beta(2, 5, n) + shift * 0.15, 0, 1).round(3)
    debt = np.minimum(np.round(credit_limit * utilization, -1), credit_limit)
    loan_amount = np.round(rng.lognormal(9.3, 0.6, n), -2)
    debt_ratio = np.clip((debt + loan_amount * 0.05 * 12) / income + shift * 0.1, 0, 3).round(3)
    late_payments = rng.poisson(0.4 + 0.8 * utilization, n)
    inquiries = rng.poisson(1.2, n)
    open_accounts = rng.poisson(6, n) + 1
    savings = np.round(np.exp(rng.normal(8.5, 1.3, n)), -1)
    months_since_delinquency = np.where(late_payments > 0, rng.integers(1, 60, n), np.nan)
    has_cosigner = (rng.random(n) < 0.12).astype(int)
    loan_term_months = rng.choice([12, 24, 36, 48, 60], n, p=[0.1, 0.2, 0.35, 0.15, 0.2])
    home = rng.choice(HOME_OWNERSHIP, n, p=[0.38, 0.22, 0.36, 0.04])
    purpose = rng.choice(PURPOSE, n, p=[0.35, 0.2, 0.1, 0.1, 0.07, 0.06, 0.05, 0.07])
    employment = rng.choice(EMPLOYMENT, n, p=[0.62, 0.14, 0.1, 0.1, 0.04])
    zip_code = _zip_codes(np.random.default_rng(7), n) if n else np.array([], dtype=str)
    zip_code = rng.permutation(zip_code)
    frame = pd.DataFrame({
        "age": age, "income": income, "employment_years": employment_years,
        "employment_type": pd.Categorical(employment, categories=EMPLOYMENT),
        "credit_history_months": credit_history_months, "credit_limit": credit_limit,
        "debt": debt, "utilization": utilization, "debt_ratio": debt_ratio,
        "loan_amount": loan_amount, "loan_term_months": loan_term_months,
        "num_late_payments_12m": late_payments, "num_inquiries_6m": inquiries,
        "num_open_accounts": open_accounts, "savings_balance": savings,
        "months_since_last_delinquency": months_since_delinquency,
        "has_cosigner": has_cosigner,
        "home_ownership": pd.Categorical(home, categories=HOME_OWNERSHIP),
        "purpose": pd.Categorical(purpose, categories=PURPOSE),
        "zip_code": pd.Categorical(zip_code),
    })
    frame["defaulted"] = _default_label(frame, rng)
    return frame


def _default_label(frame: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    logit = (
        -2.2
        + 2.4 * (frame["debt_ratio"].to_numpy() - 0.35)
        + 1.6 * (frame["utilization"].to_numpy() - 0.3)
        + 0.45 * frame["num_late_payments_12m"].to_numpy()
        + 0.12 * frame["num_inquiries_6m"].to_numpy()
        - 0.5 * (np.log(frame["income"].to_numpy()) - 10.8)
        - 0.004 * (frame["credit_history_months"].to_numpy() - 200)
        - 0.35 * frame["has_cosigner"].to_numpy()
        + 0.25 * (frame["employment_type"].astype(str).to_numpy() == "unemployed")
        + 0.2 * (frame["purpose"].astype(str).to_numpy() == "small_business")
        - 0.15 * np.log1p(frame["savings_balance"].to_numpy() / 1000)
    )
    labels: np.ndarray = (rng.random(len(frame)) < 1 / (1 + np.exp(-logit))).astype(int)
    return labels


FEATURES_YAML = """\
features:
  - {name: zip_code, type: categorical, mask: hash}
  - {name: income, mask: bucket, min: 0}
  - {name: savings_balance, mask: bucket, min: 0}
  - {name: age, immutable: true, direction: increase, min: 18, max: 100}
  - {name: has_cosigner, min: 0, max: 1}
  - {name: credit_history_months, immutable: true}
constraints:
  - debt <= credit_limit
"""
