"""The issue-titles policy pack: run by `pulumi preview --policy-pack policy` and `pulumi up --policy-pack policy`."""

import sys
from pathlib import Path

from pulumi_policy import EnforcementLevel, PolicyPack

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `pack` and `rules` sit beside this file
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the project root: `rules` reads pipelines.images

from pack import POLICIES  # type: ignore[import-not-found]  # found through the path set above

PolicyPack(name="issue-titles-guardrails", enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
