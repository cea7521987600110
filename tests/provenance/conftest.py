"""Fixtures for the provenance room: development credentials, a foreign CA, sample images."""

from __future__ import annotations

import pytest
from PIL import Image

from provenance.credentials import Credentials, ensure_dev_credentials
from provenance.manifest import GenerationFacts
from provenance.signer import FileSigner
from tests.support import encode, photo_like


@pytest.fixture(scope="session")
def dev_credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    return ensure_dev_credentials(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def foreign_credentials(tmp_path_factory: pytest.TempPathFactory) -> Credentials:
    """A second, unrelated self-made CA claiming the same organisation name."""
    return ensure_dev_credentials(tmp_path_factory.mktemp("foreign-keys"))


@pytest.fixture(scope="session")
def file_signer(dev_credentials: Credentials) -> FileSigner:
    return FileSigner.from_credentials(dev_credentials)


@pytest.fixture(scope="session")
def picture() -> Image.Image:
    return photo_like(11, (512, 512))


@pytest.fixture(scope="session")
def png_bytes(picture: Image.Image) -> bytes:
    return encode(picture, "PNG")


@pytest.fixture
def txt2img_facts() -> GenerationFacts:
    return GenerationFacts(
        generation_id="gen-0001",
        kind="txt2img",
        model_name="tiny-sd",
        model_sha256="ab" * 32,
        prompt="a lighthouse at dusk, oil painting",
        negative_prompt="blurry",
        seed=1234,
        steps=20,
        guidance=7.0,
        sampler="Euler a",
        width=512,
        height=512,
        platform_user="user-7",
        watermark_alg="org.chopmark.test",
        watermark_value="00000000002a",
    )
