from open_clip.tokenizer import SimpleTokenizer

from generation.clip_tokenizer import (
    BOS_TOKEN,
    EOS_TOKEN,
    VOCAB_SIZE,
    build_clip_tokenizer,
    clip_vocab,
)

PROMPT = "A watercolour of Mount Fuji, by an unknown artist — 1890s!"


def test_vocabulary_has_clip_layout() -> None:
    vocab = clip_vocab()
    assert len(vocab) == VOCAB_SIZE
    assert vocab[BOS_TOKEN] == 49406
    assert vocab[EOS_TOKEN] == 49407
    assert vocab["!"] == 0
    assert vocab["!</w>"] == 256


def test_prompt_encodes_to_77_ids_with_start_and_end() -> None:
    tokenizer = build_clip_tokenizer()
    ids = tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77
    assert tokenizer.model_max_length == 77
    assert ids[0] == 49406
    body = SimpleTokenizer().encode(PROMPT)
    assert ids[1 : 1 + len(body)] == body  # the same BPE as CLIP's own tokenizer
    assert ids[1 + len(body)] == 49407
    assert set(ids[2 + len(body) :]) == {49407}  # padded with <|endoftext|>


def test_long_prompt_is_truncated_and_still_ends_with_eos() -> None:
    tokenizer = build_clip_tokenizer()
    ids = tokenizer("cat " * 200, padding="max_length", max_length=77, truncation=True).input_ids
    assert len(ids) == 77
    assert ids[0] == 49406
    assert ids[-1] == 49407


def test_sdxl_second_tokenizer_pads_with_bang() -> None:
    tokenizer = build_clip_tokenizer(pad_token="!")
    ids = tokenizer("a cat", padding="max_length", max_length=77).input_ids
    assert ids[:4] == [49406, 320, 2368, 49407]
    assert ids[4:] == [0] * 73
