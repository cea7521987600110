"""The policy's decision on findings alone (no image): what a verdict says when every match
scored below the thresholds, and which manifest counts as ours."""

from __future__ import annotations

from service.moderation.policy import DEFAULT_THRESHOLDS, Findings, Policy, RegistryHit, decide


def _hit(score: float) -> RegistryHit:
    return RegistryHit("w1", "a1", "Harbour", "copy", score, False, "deny", {})


def test_a_copy_below_the_threshold_is_said_so_not_called_nothing_found():
    strict = Policy(thresholds={**DEFAULT_THRESHOLDS, "registry_min_score": 0.99})
    decision = decide(strict, Findings(manifest_state="Absent", registry=(_hit(0.974),)))
    (reason,) = decision.reasons
    assert decision.verdict == "allow"
    assert "below the policy's thresholds" in reason.message and "0.99" in reason.message
    nothing = decide(Policy(), Findings(manifest_state="Absent"))
    assert "no registered artwork" in nothing.reasons[0].message


def test_only_our_own_manifest_for_this_generation_makes_it_ours_with_manifest():
    ours = Findings(
        manifest_state="Trusted", watermark_generation_id="g1", manifest_generation_id="g1"
    )
    assert decide(Policy(), ours).reasons[0].rule == "ai_ours_with_manifest"
    foreign = Findings(manifest_state="Valid", watermark_generation_id="g1")
    (why,) = decide(Policy(), foreign).reasons
    assert why.rule == "ai_ours_without_manifest" and "not ours" in why.message
    other = Findings(
        manifest_state="Trusted", watermark_generation_id="g1", manifest_generation_id="g2"
    )
    (why,) = decide(Policy(), other).reasons
    assert why.rule == "ai_ours_without_manifest" and "another generation (g2)" in why.message


def test_the_readme_lists_every_rule_and_threshold_with_its_default():
    """The README's policy tables are what an operator writes a policy file from."""
    import re
    from pathlib import Path

    from service.moderation.policy import DEFAULT_RULES, DEFAULT_THRESHOLDS

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| ([a-z0-9.]+) \|", readme, flags=re.M))
    for rule, action in DEFAULT_RULES.items():
        assert rows.get(rule) == action, rule
    for name, value in DEFAULT_THRESHOLDS.items():
        assert float(rows[name]) == value, name
