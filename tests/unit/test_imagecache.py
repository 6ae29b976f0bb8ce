"""The image facts kept between commands (runtimes/kubernetes/imagecache.py): keyed by
the node's content-addressed image ID, private, never a failure, and never trusted when
malformed."""
from __future__ import annotations

import json
import os
import stat

import pytest

from debugkit.core import userdb
from debugkit.core.errors import IdentityUnresolved
from debugkit.runtimes.kubernetes import identity, imagecache
from debugkit.runtimes.kubernetes.identity import ImageFacts, PodIdentity, PodTarget

DIGEST = "sha256:" + "ab" * 32
KEY = ("registry.example/app:1", DIGEST, "", (7777,))


def facts() -> ImageFacts:
    wanted = userdb.Wanted.for_user("app", uids=(7777,))
    db = userdb.UserDb((userdb.PasswdEntry("app", 7777, 7777, "/home/app"),),
                       (userdb.GroupEntry("app", 7777, ("app", "ops")),), True, True, wanted)
    return ImageFacts("app", db, "the local engine")


def test_kept_facts_come_back_equal_and_say_they_were_kept():
    imagecache.remember(KEY, facts())
    again = imagecache.recall(KEY)
    assert again.user == "app" and again.etc == facts().etc and again.etc.wanted == facts().etc.wanted
    assert again.via == "the local engine (kept from an earlier read of this image ID)"
    assert imagecache.recall((*KEY[:3], (0,))) is None  # other UIDs asked about: another entry


def test_the_entries_are_private():
    imagecache.remember(KEY, facts())
    path, _ = imagecache._path(KEY, create=False)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent.parent).st_mode) == 0o700


def test_an_unreadable_etc_is_kept_as_such():
    imagecache.remember(KEY, ImageFacts("", None, "registry r.example", "/etc/passwd is larger than 1 MiB"))
    again = imagecache.recall(KEY)
    assert again.etc is None and again.etc_error == "/etc/passwd is larger than 1 MiB" and again.user == ""


@pytest.mark.parametrize("damage", [
    lambda doc: doc.update(key="[\"other\"]"),
    lambda doc: doc.update(user=7),
    lambda doc: doc["etc"]["passwd"][0].__setitem__(1, "7777"),
    lambda doc: doc["etc"].pop("wanted"),
    lambda doc: doc["etc"].update(has_passwd="yes"),
])
def test_a_malformed_or_foreign_entry_is_no_entry(damage):
    imagecache.remember(KEY, facts())
    path, _ = imagecache._path(KEY, create=False)
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    assert imagecache.recall(KEY) is None


@pytest.mark.parametrize("image_id, kept", [
    (DIGEST, True), (f"docker.io/library/app@{DIGEST}", True), (f"docker-pullable://app@{DIGEST}", True),
    ("", False), ("app:1", False), ("sha256:abc", False), (f"{DIGEST}x", False),
])
def test_only_a_content_addressed_id_is_a_key(image_id, kept):
    assert imagecache.content_addressed(image_id) is kept


def pod(image_id: str) -> PodTarget:
    return PodTarget("ns", "p", "app", {
        "metadata": {"uid": "u"}, "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"containerStatuses": [{"name": "app", "imageID": image_id}]}})


def test_a_later_command_reads_the_image_no_more(monkeypatch):
    reads = []

    def read(self):
        reads.append(self.pt.container_status["imageID"])
        return ImageFacts("app", userdb.EMPTY, "the local engine")

    monkeypatch.setattr(PodIdentity, "_read_image_now", read)
    assert PodIdentity(None, pod(DIGEST)).image_user().user == "app"
    identity._IMAGES.clear()  # as in a new command
    assert PodIdentity(None, pod(DIGEST)).image_user().via.endswith("(kept from an earlier read of this image ID)")
    assert reads == [DIGEST]
    # An ID that is not a digest is read every time; a failure is never kept.
    identity._IMAGES.clear()
    PodIdentity(None, pod("app:1")).image_user()
    identity._IMAGES.clear()
    PodIdentity(None, pod("app:1")).image_user()
    assert reads == [DIGEST, "app:1", "app:1"]

    def fail(self):
        reads.append("failed")
        raise IdentityUnresolved("registry down")

    monkeypatch.setattr(PodIdentity, "_read_image_now", fail)
    other = "sha256:" + "cd" * 32
    for _ in range(2):
        identity._IMAGES.clear()
        with pytest.raises(IdentityUnresolved):
            PodIdentity(None, pod(other)).image_user()
    assert reads[-2:] == ["failed", "failed"]
