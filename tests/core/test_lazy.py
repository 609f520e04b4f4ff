import pytest

import fairbook
from fairbook import paths
from fairbook._lazy import submodules


def test_submodules_imports_named_modules_only():
    getattr_ = submodules("fairbook", {"paths"})
    assert getattr_("paths") is paths
    with pytest.raises(AttributeError, match="module 'fairbook' has no attribute 'nothing'"):
        getattr_("nothing")
    with pytest.raises(AttributeError):
        fairbook.not_a_module
