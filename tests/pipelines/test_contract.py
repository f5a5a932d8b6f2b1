"""The bundle/serving names infra and localpach read from pipelines.contract are the ones the stages write."""

import issue_titles.contract as stages_contract

import pipelines.contract as shared_contract


def test_the_shared_contract_is_the_stages_contract():
    shared = {name: value for name, value in vars(shared_contract).items() if name.isupper()}
    assert shared == {name: getattr(stages_contract, name) for name in shared}
