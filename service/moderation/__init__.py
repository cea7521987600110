"""Moderation for platforms: provenance, registry and training-source checks in one call, a
verdict from an operator's policy, batch jobs with signed webhooks."""
