"""Delivery: GitHub workflows and the policy pack."""
