"""platform/reports.py: the page every report is written into."""

from __future__ import annotations

from include.modelops.platform import reports


def test_a_page_is_self_contained_with_the_shared_and_its_own_rules():
    page = reports.page("Card of <b>x</b>", "<p>body</p>", css=".mine{color:red}")

    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Card of &lt;b&gt;x&lt;/b&gt;</title>" in page  # the title is user text
    assert reports.STYLESHEET in page and ".mine{color:red}" in page
    assert page.index(reports.STYLESHEET) < page.index(".mine")  # a report's own rules win
    assert "<p>body</p>" in page  # the body is the caller's, already escaped
    assert "<script" not in page and "<link" not in page and "src=" not in page


def test_badges_say_pass_fail_or_nothing():
    assert reports.badge("PASSED", True) == '<span class="badge pass">PASSED</span>'
    assert reports.badge("REJECTED", False) == '<span class="badge fail">REJECTED</span>'
    assert reports.badge("<none>", None) == '<span class="badge na">&lt;none&gt;</span>'


def test_escape_makes_any_value_inert_text():
    assert reports.escape(None) == ""
    assert reports.escape('<img src=x onerror="1">') == "&lt;img src=x onerror=&quot;1&quot;&gt;"
    assert reports.escape(3.5) == "3.5"
