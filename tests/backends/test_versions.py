"""The worker's rule for the version a request names (path and X-Model-Version)."""

from __future__ import annotations

import pytest

from backends.errors import VersionRefused
from backends.versions import requested_version


def test_path_and_header_may_differ_only_in_build_metadata() -> None:
    assert requested_version("1.2.0", "1.2.0+b7") == "1.2.0+b7"
    assert requested_version("1.2.0", None) == "1.2.0"
    assert requested_version(None, "1.2.0") == "1.2.0"
    with pytest.raises(VersionRefused, match=r'"1\.2\.0".*"1\.3\.0"'):
        requested_version("1.2.0", "1.3.0")
