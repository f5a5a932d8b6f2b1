"""The issue-titles policy pack: run by `pulumi preview --policy-pack policy` and `pulumi up --policy-pack policy`."""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `pack` and `rules` sit beside this file

from pack import POLICIES

PolicyPack(name="issue-titles-guardrails", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
