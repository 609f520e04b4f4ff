"""The prose rule: markdown cells state numbers and verdicts of the run only through glue."""
from pathlib import Path

import pytest

from fairbook.book import chapters, prose

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", chapters.available())
def test_chapter_prose_types_no_run_number_or_verdict(name):
    bad = prose.violations(REPO / "notebooks" / f"{name}.md")
    assert not bad, "typed run numbers or verdicts (glue them):\n" + "\n".join(bad)


@pytest.mark.parametrize("text", [
    "In this run GCM reaches −ΔEO −0.033 against EOR's −0.051.",
    "The held-out gain is 0.54 pp.",
    "8 of 14 claims hold in this run.",
    "The claim is reproduced here.",
    "SFT is significantly fairer than FFT.",
    "Accuracy drops by 3 % on the minority group.",
])
def test_the_rule_catches_typed_run_results(text):
    assert prose.check_text(text) == [text]


@pytest.mark.parametrize("text", [
    "In this run GCM reaches −ΔEO {glue:text}`gcm_neg_deo:.3f` against EOR.",
    "The held-out gain is {glue:text}`mime_gain` and the claim is {glue:text}`mime_gain_verdict`.",
    "The paper reports −ΔEO −0.033 for GCM against −0.051 for EOR.",
    "Chari et al. find a gain of 0.54 pp {cite}`chari2022mime`.",
    "A claim is reproduced when its Holm-adjusted p is below 0.05 in the paper's direction.",
    "Table 3 and eq. 6 define the metric; the model has 2 layers.",
    "The update is $\\eta = 0.05$ and the code calls `fit(lr=0.1)`.",
])
def test_the_rule_passes_glued_cited_and_structural_text(text):
    assert prose.check_text(text) == []

# A {glue:text}`key` without its glue() fails the strict smoke-book build (tests/test_site.py).
