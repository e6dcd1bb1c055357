"""Tiny test models built in-process (no network): a two-layer BERT with random weights and a WordPiece vocabulary
counted from the shipped demo texts. Used by the `tiny_encoder` fixture and the crash harness."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path

DEMO_DATA = Path(str(files("llmaaa_local").joinpath("demo_data")))


def demo_texts() -> Iterator[str]:
    """Every text of the shipped demo data (all tasks), for the tiny vocabulary."""
    for path in sorted(DEMO_DATA.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            yield json.loads(line)["text"]


def build_tiny_encoder(folder: Path) -> Path:
    """Write a tiny BERT (seeded random weights) and its tokenizer into `folder`; the same bytes in every process.

    Pass the folder as `TrainConfig(student=...)` or `--student`.
    """
    import torch
    from tokenizers import Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # The vocabulary is counted and sorted here rather than trained: the WordPiece trainer breaks ties in a
    # different order in every process, which would make the tiny student differ from run to run.
    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter(
        word for text in demo_texts() for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    letters = sorted({char for word in counts for char in word})
    words = [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    vocabulary = list(dict.fromkeys(specials + letters + [f"##{char}" for char in letters] + words))[:2000]
    tokenizer = Tokenizer(WordPiece({token: i for i, token in enumerate(vocabulary)}, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = splitter
    tokenizer.decoder = decoders.WordPiece()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(token, tokenizer.token_to_id(token)) for token in ("[CLS]", "[SEP]")])
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                      cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    wrapped.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(wrapped), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, pad_token_id=tokenizer.token_to_id("[PAD]"))
    BertModel(config).save_pretrained(str(folder), safe_serialization=True)
    return folder
