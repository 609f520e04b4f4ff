"""The fairbook.mime package: a light public API, chapter modules loaded on first use, the runner's hooks."""
import subprocess
import sys

import pytest

from fairbook import mime
from fairbook.errors import ParameterError
from fairbook.mime import chapter


def test_public_api_is_light_and_the_chapter_modules_load_on_first_use():
    """``import fairbook.mime`` (theory and curve) needs no torch; experiment, claims and chapter are
    submodules reached as attributes; every public name of the package is defined where __all__ says."""
    code = ("import sys, fairbook.mime as m; assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'fairbook.mime.experiment' not in sys.modules; m.claims.judge; m.chapter.check_parameters; "
            "m.experiment.Recipe; assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    for name in mime.__all__:
        assert getattr(mime, name) is not None
    assert set(mime.__all__) == set(mime.theory.__all__) | set(mime.curve.__all__)
    for module in (mime.theory, mime.curve, mime.experiment, mime.claims, mime.chapter):
        assert all(hasattr(module, n) for n in module.__all__), module.__name__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mime.nope


def test_chapter_hooks_check_parameters_and_have_no_input_files():
    chapter.check_parameters({"betas": [0.0, 0.5], "minor_sep": 0.5, "major_sep": 1.0, "datasets": ["adult"]})
    assert chapter.input_files({}) == {}
    for bad, match in (({"betas": [0.5, 1.0]}, "'betas'"), ({"map_betas": [0.0, 0.0, 1.0]}, "'map_betas'"),
                       ({"minor_sep": 1.0, "major_sep": 1.0}, "below major_sep"),
                       ({"datasets": ["adult", "adult"]}, "distinct dataset names")):
        with pytest.raises(ParameterError, match=match):
            chapter.check_parameters(bad)
