"""Generation wired to the service: adapter and training-source stores, the generation record,
and the pipeline's protocols implemented over the runtime (Postgres, FAISS banks, blob store)."""

from service.genservice.service import GenerationService, get_generation_service

__all__ = ["GenerationService", "get_generation_service"]
