"""The replicas' S3 client (issue_titles/s3io.py): AWS Signature Version 4 against AWS's published examples, and
against a gateway that checks signatures as Pachyderm's does with auth on (tests/stages/fake_cluster.py)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from issue_titles.errors import StageError
from issue_titles.s3io import (
    EMPTY_SHA256,
    Credentials,
    authorization,
    canonical_request,
    credentials_from_env,
    download_bucket,
    list_keys,
    signed_headers,
    upload_folder,
)
from tests.stages.fake_cluster import S3State, fake_s3

# AWS's Signature Version 4 test suite (aws-sig-v4-test-suite, as in botocore's and the AWS SDKs' tests): the
# example credentials, 2015-08-30T12:36:00Z, region us-east-1, service "service".
SUITE = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SUITE_HEADERS = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}
SCOPE = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date"
TOKEN = "0123456789abcdef0123456789abcdef"  # a Pachyderm token: the access key and, as the gateway takes it, the secret


def test_get_vanilla_from_the_aws_test_suite() -> None:
    request, _ = canonical_request("GET", "https://example.amazonaws.com/", SUITE_HEADERS, EMPTY_SHA256)
    assert request == (
        "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert authorization(
        "GET", "https://example.amazonaws.com/", SUITE_HEADERS, EMPTY_SHA256, SUITE, service="service"
    ) == (SCOPE + ", Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")


def test_get_vanilla_query_order_key_case_from_the_aws_test_suite() -> None:
    url = "https://example.amazonaws.com/?Param2=value2&Param1=value1"
    assert authorization("GET", url, SUITE_HEADERS, EMPTY_SHA256, SUITE, service="service") == (
        SCOPE + ", Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
    )


def test_the_s3_get_object_example_from_the_aws_docs() -> None:
    """Amazon S3 API reference, "Signature Calculations for the Authorization Header": GET /test.txt, Range 0-9."""
    credentials = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    headers = {
        "Host": "examplebucket.s3.amazonaws.com",
        "Range": "bytes=0-9",
        "x-amz-content-sha256": EMPTY_SHA256,
        "x-amz-date": "20130524T000000Z",
    }
    assert authorization(
        "GET", "https://examplebucket.s3.amazonaws.com/test.txt", headers, EMPTY_SHA256, credentials
    ) == (
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
        "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
        "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    )


def test_credentials_come_from_the_workers_env_and_never_show_in_a_repr() -> None:
    credentials = credentials_from_env({"AWS_ACCESS_KEY_ID": TOKEN, "AWS_SECRET_ACCESS_KEY": TOKEN})
    assert credentials == Credentials(TOKEN, TOKEN)
    assert TOKEN not in repr(credentials)
    assert credentials_from_env({}) is None  # local: unsigned
    with pytest.raises(StageError, match="only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        credentials_from_env({"AWS_ACCESS_KEY_ID": TOKEN})


@pytest.fixture
def gateway():
    """A gateway with Pachyderm auth on, holding a bucket with keys that need escaping, over two pages."""
    state = S3State(
        tokens={TOKEN},
        buckets={"pre_process": {"a b+c.npy": b"1", "meta/vocab~x.json": b"22", "z.txt": b"333"}, "out": {}},
    )
    server, url = fake_s3(state)
    yield state, url
    server.shutdown()


def test_signed_requests_list_get_and_put_through_an_auth_on_gateway(gateway, tmp_path: Path) -> None:
    state, url = gateway
    credentials = Credentials(TOKEN, TOKEN)
    keys = download_bucket(url, "pre_process", tmp_path / "in", credentials)
    assert keys == ["a b+c.npy", "meta/vocab~x.json", "z.txt"]  # two pages: the marker query is signed too
    assert (tmp_path / "in" / "meta" / "vocab~x.json").read_bytes() == b"22"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.weights.h5").write_bytes(b"\x00weights" * 1000)
    assert upload_folder(url, tmp_path / "model", "out", credentials) == ["model.weights.h5"]
    assert state.buckets["out"]["model.weights.h5"] == b"\x00weights" * 1000
    assert set(state.auth) == {f"v4 {TOKEN}"}


def test_an_auth_on_gateway_refuses_unsigned_requests(gateway) -> None:
    state, url = gateway
    with pytest.raises(StageError, match="HTTP 403 AccessDenied"):
        list(list_keys(url, "pre_process"))
    assert state.auth == ["AccessDenied"]


def test_an_auth_on_gateway_refuses_an_unknown_token_and_a_wrong_secret(gateway) -> None:
    state, url = gateway
    with pytest.raises(StageError, match="HTTP 403 InvalidAccessKeyId"):
        list(list_keys(url, "pre_process", credentials=Credentials("not-a-token", "not-a-token")))
    with pytest.raises(StageError, match="HTTP 403 SignatureDoesNotMatch"):
        list(list_keys(url, "pre_process", credentials=Credentials(TOKEN, "another secret")))
    assert state.auth == ["InvalidAccessKeyId", "SignatureDoesNotMatch"]


def test_a_body_that_is_not_the_signed_one_and_unsigned_payload_are_refused(gateway) -> None:
    """The payload hash is the body's SHA-256: s2 takes no UNSIGNED-PAYLOAD (not 64 hex digits: InvalidDigest)."""
    _, url = gateway
    target = f"{url}/out/x"
    headers = signed_headers("PUT", target, Credentials(TOKEN, TOKEN), payload_hash=EMPTY_SHA256)
    assert requests.put(target, data=b"not empty", headers=headers, timeout=5).status_code == 400
    headers = signed_headers("PUT", target, Credentials(TOKEN, TOKEN), payload_hash="UNSIGNED-PAYLOAD")
    response = requests.put(target, data=b"x", headers=headers, timeout=5)
    assert response.status_code == 400 and b"InvalidDigest" in response.content


def test_a_request_signed_more_than_15_minutes_ago_is_refused(gateway) -> None:
    _, url = gateway
    target = f"{url}/pre_process"
    old = datetime.now(UTC) - timedelta(minutes=16)
    response = requests.get(
        target, headers=signed_headers("GET", target, Credentials(TOKEN, TOKEN), now=old), timeout=5
    )
    assert response.status_code == 403 and b"RequestTimeTooSkewed" in response.content


def test_with_auth_off_unsigned_and_default_credentials_both_pass(tmp_path: Path) -> None:
    """Auth off: the worker hands `default`/`default`, which the gateway checks (any key is its own secret)."""
    state = S3State(buckets={"b": {"k": b"v"}})
    server, url = fake_s3(state)
    try:
        assert download_bucket(url, "b", tmp_path / "unsigned") == ["k"]
        assert download_bucket(url, "b", tmp_path / "signed", Credentials("default", "default")) == ["k"]
    finally:
        server.shutdown()
    assert state.auth == ["custom", "custom", "v4 default", "v4 default"]
