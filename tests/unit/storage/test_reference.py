"""References: Docker's normalisation, tags and digests; malformed ones name the reference and
the reason."""

from __future__ import annotations

import pytest

from silo.errors import InvalidArgument
from silo.storage import reference

pytestmark = pytest.mark.unit
D = "sha256:" + "a" * 64

GOOD = [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
    ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/a/b/c:t_1", "localhost:5000/a/b/c:t_1", "localhost:5000/a/b/c:t_1"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
    ("[::1]:5000/x:t", "[::1]:5000/x:t", "[::1]:5000/x:t"),
    (f"busybox@{D}", f"docker.io/library/busybox@{D}", f"busybox@{D}"),
    (f"busybox:1@{D}", f"docker.io/library/busybox:1@{D}", f"busybox:1@{D}"),
    ("ab-c__d/e--f.g", "docker.io/ab-c__d/e--f.g:latest", "ab-c__d/e--f.g:latest"),
    ("Registry.Example.COM/x", "Registry.Example.COM/x:latest", "Registry.Example.COM/x:latest"),
    ("a" * 63, f"docker.io/library/{'a' * 63}:latest", f"{'a' * 63}:latest"),
]


@pytest.mark.parametrize(("text", "full", "familiar"), GOOD)
def test_good_references_normalise(text: str, full: str, familiar: str) -> None:
    ref = reference.parse(text)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert reference.parse(full) == ref  # the normal form is a fixed point


def test_parts() -> None:
    ref = reference.parse(f"localhost:5000/team/app:v2@{D}")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == \
        ("localhost:5000", "team/app", "v2", D)
    assert ref.name == "localhost:5000/team/app"
    assert reference.parse(f"x@{D}").tag is None
    assert reference.parse("x", default_tag=False).tag is None


BAD = [
    ("", "is empty"),
    ("Busybox", "must be lowercase"),
    ("docker.io/Library/busybox", "must be lowercase"),
    ("busy box", "whitespace"),
    ("busybox\n", "whitespace"),
    ("busybox:", "tag ''"),
    ("busybox:-x", "tag '-x'"),
    ("busybox:" + "t" * 129, "tag"),
    ("a//b", "path component ''"),
    ("a/", "path component ''"),
    ("/a", "path component ''"),
    ("-a", "path component '-a'"),
    ("a_-b", "path component"),
    ("foo:bar:baz", "path component 'foo:bar'"),
    ("busybox@sha256:123", "64 lowercase hex"),
    ("busybox@md5:" + "a" * 32, "unknown digest algorithm"),
    (f"busybox@{D}@{D}", "more than one '@'"),
    ("a" * 64, "image id"),
    ("exa_mple.com:5000/x", "registry"),
    ("example.com:5000000/x", "registry"),
    (":tag", "no repository"),
    ("x/" + "a" * 260, "longer than 255"),
]


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_bad_references_name_the_reference_and_the_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        reference.parse(text)
    assert repr(text) in str(e.value)
    assert reason in str(e.value)
    assert e.value.field == "reference"


def test_not_a_string() -> None:
    with pytest.raises(InvalidArgument, match="must be a string"):
        reference.parse(5)  # type: ignore[arg-type]


def test_a_name_cannot_carry_a_digest() -> None:
    with pytest.raises(InvalidArgument, match="cannot carry a digest"):
        reference.parse_name(f"busybox@{D}")
    assert str(reference.parse_name("busybox")) == "docker.io/library/busybox:latest"
