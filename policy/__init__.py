"""The pulumi-policy pack; `rules` holds the checks as plain functions."""
