"""docs/cluster.md's table of upstream behaviour names tests that exist: the table cannot drift from the suite."""

from __future__ import annotations

import re

from tests.infra.harness import ROOT


def table_rows() -> list[list[str]]:
    text = (ROOT / "docs" / "cluster.md").read_text()
    section = text[text.index("## 10. Upstream behaviour the program depends on") :]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| behaviour")]
    return [re.split(r"(?<!\\)\|", row)[1:-1] for row in rows]


def test_every_row_names_an_upstream_file_and_a_test() -> None:
    rows = table_rows()
    assert len(rows) >= 15
    for behaviour, source, guard in rows:
        assert re.search(r"[\w-]+/[\w.-]+", source), f"no upstream repository for: {behaviour}"
        assert "test" in guard, f"no test for: {behaviour}"


def test_every_test_the_table_names_exists() -> None:
    current_file = None
    for _, _, guard in table_rows():
        for path, name in re.findall(r"`(?:(tests/[\w/]+\.py|[\w]+\.py))?(?:::(\w+))?", guard):
            if path:
                current_file = path if path.startswith("tests/") else f"tests/infra/{path}"
                if not path.startswith("tests/") and not (ROOT / current_file).exists():
                    current_file = f"tests/delivery/{path}"
                assert (ROOT / current_file).exists(), current_file
            if name:
                assert current_file and f"def {name}(" in (ROOT / current_file).read_text(), f"{current_file}::{name}"


# --- each citation's repository, tag and path, checked for shape (issue 27) -----------------------------------------
# A citation is `owner/repo TAG, `path`[, `path`...]`: a tag is a release (`v1.17.1`, `2.12.x`, `4.11.3`), a
# prefixed release tag (`controller-v1.11.3`, `helm-chart-4.11.3`) or a commit; a path is a backticked file or folder
# inside that repository. Several citations in one cell are separated by `;` or by the next `owner/repo`.
_BACKTICKED = re.compile(r"`[^`]*`")
_REPO = re.compile(r"(?<![\w./-])([A-Za-z0-9][\w-]*/[A-Za-z0-9][\w.-]*)(?=[\s,(])")
_TAG = re.compile(r"^\s+(v?\d+\.\d+(\.\d+|\.x)?(-[\w.]+)?|[a-z]+(-[a-z]+)*-v?\d+\.\d+\.\d+|[0-9a-f]{7,40})\b")
_PATH = re.compile(r"^[\w.*-]+(/[\w.*{}-]+)*/?$")


def _is_path(text: str) -> bool:
    return bool(_PATH.match(text)) and ("/" in text or re.search(r"\.[a-z]{1,5}$", text) is not None)


def citations(source: str) -> list[tuple[str, str, list[str]]]:
    """(repository, tag, paths) of each citation in a table cell."""
    masked = _BACKTICKED.sub(lambda m: "\0" * len(m.group()), source)  # repositories are never in backticks
    starts = list(_REPO.finditer(masked))
    found = []
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(source)
        tag = _TAG.match(masked[match.end() : end])
        paths = [p.strip("`") for p in _BACKTICKED.findall(source[match.end() : end])]
        found.append((match.group(1), tag.group(1) if tag else "", [p for p in paths if _is_path(p)]))
    return found


def test_every_citation_names_a_repository_a_tag_and_a_path() -> None:
    for behaviour, source, _ in table_rows():
        cited = citations(source)
        assert cited, f"no upstream repository for: {behaviour}"
        for repo, tag, paths in cited:
            assert tag, f"{repo} is cited without a tag, release or commit for: {behaviour.strip()[:60]}"
            assert paths, f"{repo} {tag} is cited without a path for: {behaviour.strip()[:60]}"


def test_the_shape_check_refuses_what_the_issue_found() -> None:
    """The citations issue 27 found wanting: no tag and no path, or no tag."""
    assert citations("helm/kind-action (kind)") == [("helm/kind-action", "", [])]
    assert citations("kubernetes/ingress-nginx, `docs/user-guide/nginx-configuration/annotations.md`")[0][1] == ""
    assert citations("pulumi/pulumi-kubernetes v4.32.0, `provider/pkg/await/condition/jsonpath.go`") == [
        ("pulumi/pulumi-kubernetes", "v4.32.0", ["provider/pkg/await/condition/jsonpath.go"])
    ]


def test_the_table_cites_the_files_issue_27_asks_for() -> None:
    text = " ".join(source for _, source, _ in table_rows())
    for needed in (
        "etc/helm/pachyderm/templates/pachd/auth-secret.yaml",
        "src/server/auth/server/api_server.go",
        "src/internal/middleware/auth/interceptor.go",
        "src/internal/minikubetestenv/deploy.go",
        "provider/pkg/await/condition/jsonpath.go",
        "seldon_deployment_status.go",
        "src/server/pps/server/api_server.go",
    ):
        assert f"`{needed}`" in text or needed in text, needed
    assert "google-github-actions/auth v3" in text  # the workflows pin @v3
    assert "kubernetes/ingress-nginx controller-v1.11.3" in text  # the controller the 4.11.3 chart deploys
    assert "seldondeployment_types.go` |" not in text  # the status constants are not in the types file


def test_the_table_cites_how_the_s3_gateway_checks_the_replicas_signed_requests() -> None:
    """With Pachyderm auth on, the replicas sign: the gateway's auth (auth.go), the credentials the worker hands
    (driver.go), and s2's Signature V4 check are each cited."""
    text = " ".join(source for _, source, _ in table_rows())
    for needed in (
        "src/server/pfs/s3/auth.go",
        "src/server/worker/driver/driver.go",
        "pachyderm/s2 e4a20345d93c, `s2.go`",
        "util_header.go",
    ):
        assert needed in text, needed
