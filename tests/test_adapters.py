"""The library adapters state what they rely on, for one reviewed version of each library."""

from __future__ import annotations

from importlib.metadata import version

from components.adapters.fastrtc import FASTRTC_VERSION


def test_fastrtc_is_the_version_its_adapter_was_reviewed_for() -> None:
    assert version("fastrtc") == FASTRTC_VERSION, (
        f"fastrtc is now {version('fastrtc')}: review components/adapters/fastrtc.py against it (each thing it "
        "relies on is listed at the top), then set FASTRTC_VERSION"
    )
