"""Turning a request into an image: diffusers pipelines, LoRA adapters, the diffusion runner.

With no model configured (``CHOPMARK_MODEL`` unset) the default is a tiny Stable Diffusion
pipeline with seeded random weights: everything runs, but the pictures are noise.
"""
