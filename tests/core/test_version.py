import pytest

from zdu.errors import VersionError
from zdu.model import Phase, Version


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        ("16.5.1", {"major": 16, "minor": 5, "patch": 1, "rc": None}),
        ("16.6.0-rc42", {"major": 16, "minor": 6, "patch": 0, "rc": 42}),
        ("16.6.0-rc42-ee", {"rc": 42, "edition": "ee"}),
        ("16.5.1-ee.0", {"patch": 1, "edition": "ee", "build": 0}),
        ("v17.0.0", {"major": 17}),
        (
            "16.6.202310241220-a1b2c3d4e5f.f9e8d7c6b5a",
            {
                "major": 16,
                "minor": 6,
                "auto_deploy_timestamp": "202310241220",
                "auto_deploy_shas": ("a1b2c3d4e5f", "f9e8d7c6b5a"),
            },
        ),
    ],
)
def test_parses_gitlab_versions(text, fields):
    version = Version.parse(text)
    for name, value in fields.items():
        assert getattr(version, name) == value
    assert str(version) == text


@pytest.mark.parametrize(
    "text", ["16.5", "16.5.1.2.3", "latest", "16.05.1", "16.6.0-rc", "16.6.2023-abc.def", ""]
)
def test_rejects_what_is_not_a_version_naming_it(text):
    with pytest.raises(VersionError, match="not a GitLab version") as caught:
        Version.parse(text)
    assert repr(text) in str(caught.value)


def test_order_auto_deploy_then_rc_then_release_then_patch():
    ordered = [
        "16.5.9",
        "16.6.202310241220-a1b2c3d4e5f.f9e8d7c6b5a",
        "16.6.202310250900-b1b2c3d4e5f.f9e8d7c6b5a",
        "16.6.0-rc1",
        "16.6.0-rc42",
        "16.6.0",
        "16.6.1",
        "16.10.0",
        "17.0.0",
    ]
    versions = [Version.parse(v) for v in ordered]
    assert sorted(reversed(versions)) == versions
    assert Version.parse("16.6.0-ee") == Version.parse("16.6.0")
    assert Version.parse("16.6.0-rc1").is_prerelease and not Version.parse("16.6.0").is_prerelease


def test_rollback_possible_only_before_post_deployment_migrations():
    assert [p for p in Phase.ORDER if p.rollback_possible] == list(Phase.ORDER[:6])
    assert not Phase.MIGRATE_POST.rollback_possible
