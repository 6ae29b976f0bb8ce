"""Registry credentials as the docker CLI finds and sends them (runtimes/docker/registryauth.py;
checked against the docker CLI itself in tests/integration/conformance), and the build
context the toolbox build uploads (runtimes/docker/images.py)."""
from __future__ import annotations

import base64
import io
import json
import tarfile

import pytest

from debugkit.runtimes.docker import registryauth
from debugkit.runtimes.docker.images import context_tar
from debugkit.runtimes.docker.registryauth import RegistryAuthError, all_credentials, auth_key, credentials, encode


def config(tmp_path, data: dict) -> dict:
    (tmp_path / "config.json").write_text(json.dumps(data))
    return {"DOCKER_CONFIG": str(tmp_path), "PATH": str(tmp_path / "bin"), "HOME": str(tmp_path)}


def helper(tmp_path, name: str, answer: dict | None, *, exit_code: int = 0) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / f"docker-credential-{name}"
    said = json.dumps(answer) if answer is not None else "credentials not found in native keychain"
    script.write_text(f"#!/bin/sh\nread server\necho \"$1 $server\" >> {tmp_path}/asked\n"
                      f"echo '{said}'\nexit {exit_code if answer is not None else 1}\n")
    script.chmod(0o755)


AUTH = base64.b64encode(b"pushy:s3cret").decode()


@pytest.mark.parametrize("repository, key", [
    ("registry.example:5000/team/toolbox", "registry.example:5000"),
    ("localhost/toolbox", "localhost"),
    ("team/toolbox", "https://index.docker.io/v1/"),
    ("docker.io/team/toolbox", "https://index.docker.io/v1/"),
    ("toolbox", "https://index.docker.io/v1/"),
])
def test_the_config_key_of_a_repository(repository, key):
    assert auth_key(repository) == key


def test_an_auths_entry_and_one_written_as_a_url(tmp_path):
    env = config(tmp_path, {"auths": {"https://registry.example:5000/v1/": {"auth": AUTH}}})
    assert credentials("registry.example:5000", environ=env) == {
        "username": "pushy", "password": "s3cret", "serveraddress": "https://registry.example:5000/v1/"}
    assert credentials("other.example", environ=env) == {}


def test_a_credential_helper_wins_and_a_token_user_is_an_identity_token(tmp_path):
    env = config(tmp_path, {"credHelpers": {"registry.example:5000": "fake"},
                            "auths": {"registry.example:5000": {"auth": AUTH, "email": "a@b"}}})
    helper(tmp_path, "fake", {"ServerURL": "registry.example:5000", "Username": "<token>", "Secret": "id-tok"})
    assert credentials("registry.example:5000", environ=env) == {
        "identitytoken": "id-tok", "serveraddress": "registry.example:5000", "email": "a@b"}
    assert (tmp_path / "asked").read_text() == "get registry.example:5000\n"


def test_a_helper_without_credentials_for_the_registry_gives_none(tmp_path):
    env = config(tmp_path, {"credsStore": "fake", "auths": {"registry.example:5000": {"auth": AUTH}}})
    helper(tmp_path, "fake", None)
    assert credentials("registry.example:5000", environ=env) == {}


def test_a_missing_or_failing_helper_is_one_line_without_secrets(tmp_path):
    env = config(tmp_path, {"credsStore": "absent"})
    with pytest.raises(RegistryAuthError, match="docker-credential-absent is not installed"):
        credentials("r.example", environ=env)
    env = config(tmp_path, {"credsStore": "broken"})
    helper(tmp_path, "broken", {"Secret": "s3cret-leak"}, exit_code=2)
    with pytest.raises(RegistryAuthError, match="get failed") as err:
        credentials("r.example", environ=env)
    assert "s3cret" not in str(err.value)


def test_every_credential_for_a_build(tmp_path):
    env = config(tmp_path, {"auths": {"a.example": {"auth": AUTH}}, "credHelpers": {"b.example": "fake"}})
    helper(tmp_path, "fake", {"ServerURL": "b.example", "Username": "helped", "Secret": "pw"})
    assert all_credentials(environ=env) == {
        "a.example": {"username": "pushy", "password": "s3cret", "serveraddress": "a.example"},
        "b.example": {"username": "helped", "password": "pw", "serveraddress": "b.example"}}


def test_the_header_is_base64url_json():
    value = encode({"username": "u", "password": "p?>"})
    assert json.loads(base64.urlsafe_b64decode(value)) == {"username": "u", "password": "p?>"}
    assert "+" not in value and "/" not in value


def test_a_config_that_is_not_json_is_refused(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(RegistryAuthError, match="is not valid JSON"):
        registryauth.load_config({"DOCKER_CONFIG": str(tmp_path)})


def test_the_build_context_honours_dockerignore(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "helper").mkdir()
    (tmp_path / "helper" / "main.go").write_text("package main\n")
    (tmp_path / "helper" / "main_test.go").write_text("package main\n")
    (tmp_path / "helper" / "debugkit-helper").write_text("binary")
    (tmp_path / ".dockerignore").write_text("# comment\nhelper/*_test.go\nhelper/debugkit-helper\n")
    with tarfile.open(fileobj=io.BytesIO(context_tar(str(tmp_path)))) as tar:
        names = sorted(tar.getnames())
        owners = {(m.uid, m.gid) for m in tar.getmembers()}
    assert names == [".dockerignore", "Dockerfile", "helper/main.go"]
    assert owners == {(0, 0)}
