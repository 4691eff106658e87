"""Generate tiny XLM-R rerank fixtures and their transformers reference scores.

The service's tests compare llama.cpp scores against Hugging Face
`transformers`, but the tests must run without torch and without network. This
script (run once, by `make fixtures`, in a venv with torch, transformers,
sentencepiece and gguf) builds everything offline and writes to
`tests/fixtures/`:

* `xlmr-tiny-f32.gguf`: random-weight `XLMRobertaForSequenceClassification`
  shaped like bge-reranker but tiny, with its own SentencePiece unigram
  tokenizer trained here on a built-in multilingual corpus.
* `xlmr-tiny-f32-nokeys.gguf`: the same file without the
  `tokenizer.ggml.add_{bos,eos,sep}_token` keys, like GGUFs converted long ago.
* `xlmr-tiny-jina-v2-f32.gguf`: the same weights under the tensor names of
  jina-reranker-v2-base-multilingual (jina's XLM-R "flash" implementation:
  fused `mixer.Wqkv`, `norm1`/`norm2`, `mlp.fc1`/`fc2`, `emb_ln`), which
  llama.cpp reads as the same `bert` graph; it must score as the reranker.
* `xlmr-tiny-embed-f32.gguf`: an `XLMRobertaModel` (no classification head),
  for checking that the service refuses non-rerankers.
* `xlmr-tiny-checkpoint/`: the reranker's Hugging Face checkpoint itself
  (config, safetensors weights, tokenizer), which the tests serve from a
  stand-in hub for the service to convert with llama.cpp's converter.
* `xlmr-tiny.reference.json`: raw logits, pair lengths, truncation flags and
  the first pair's token ids, computed by transformers for the reranker.

Usage (`make fixtures` runs the first form):
    .venv-fixtures/bin/python scripts/make_fixtures.py [--llama-cpp-src DIR] [--out-dir DIR]

`--llama-cpp-src` is a llama.cpp source tree holding `convert_hf_to_gguf.py`
and `gguf-py/`. Without it, the llama-cpp-python sdist matching the service's
pin is fetched with `pip download` (PyPI only) and its vendored llama.cpp used.
The output is deterministic: a rerun gives the same scores.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gguf
import sentencepiece as spm
import torch
import transformers
from transformers import (
    XLMRobertaConfig,
    XLMRobertaForSequenceClassification,
    XLMRobertaModel,
    XLMRobertaTokenizer,
)

LLAMA_CPP_PYTHON_VERSION = "0.3.36"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT_DIR = REPO_ROOT / "tests" / "fixtures"

RERANKER_GGUF = "xlmr-tiny-f32.gguf"
NOKEYS_GGUF = "xlmr-tiny-f32-nokeys.gguf"
EMBED_GGUF = "xlmr-tiny-embed-f32.gguf"
JINA_V2_GGUF = "xlmr-tiny-jina-v2-f32.gguf"
REFERENCE_JSON = "xlmr-tiny.reference.json"
CHECKPOINT_DIR = "xlmr-tiny-checkpoint"
SP_MODEL_NAME = "sentencepiece.bpe.model"

MAX_LENGTH = 128
SP_VOCAB_SIZE = 1000
CORPUS_SEED = 0
# llama.cpp's CPU path rounds through fp16 (GELU table; K/V and the V
# accumulator under flash attention), so its logits differ from transformers'
# by about 2e-3 of their magnitude whatever the scale. This range and seed
# give 0.2-2 logits whose closest pair in any case is still ~0.04 apart,
# about 10x that error (checked against llama-cpp-python 0.3.36).
INITIALIZER_RANGE = 0.2
WEIGHTS_SEED = 1681
MIN_SCORE_GAP = 0.01
MAX_GGUF_BYTES = 2_000_000
REMOVED_KEYS = (
    gguf.Keys.Tokenizer.ADD_BOS,
    gguf.Keys.Tokenizer.ADD_EOS,
    gguf.Keys.Tokenizer.ADD_SEP,
)

# Built-in text, so the tokenizer does not depend on the Python version or
# on files outside this script. Accents and CJK make the vocab cover Unicode.
CORPUS_TEXT = """\
The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda, is a bear species endemic to China.
It is characterised by its bold black-and-white coat and rotund body.
The name giant panda is sometimes used to distinguish it from the red panda, a neighbouring musteloid.
Though it belongs to the order Carnivora, the giant panda is a folivore, with bamboo shoots and leaves making up more than 99% of its diet.
Giant pandas in the wild occasionally eat other grasses, wild tubers, or even meat in the form of birds, rodents, or carrion.
In captivity, they may receive honey, eggs, fish, shrubs, oranges, or bananas along with specially prepared food.
The giant panda lives in a few mountain ranges in central China, mainly in Sichuan, but also in neighbouring Shaanxi and Gansu.
As a result of farming, deforestation, and other development, the giant panda has been driven out of the lowland areas where it once lived.
Astronomers measure the distance to nearby stars by parallax, watching how their position shifts as the Earth orbits the Sun.
Photosynthesis converts sunlight, water and carbon dioxide into glucose and oxygen inside the chloroplasts of green plants.
The orchestra rehearsed a symphony by Beethoven, then a concerto for violin, and finally a short overture.
Volcanoes erupt when molten rock, called magma, rises through cracks in the crust and reaches the surface.
Medieval castles were built with thick walls, narrow windows, drawbridges, towers and deep moats filled with water.
The recipe needs flour, butter, sugar, vanilla, a pinch of salt, three eggs and a cup of warm milk.
Engineers designed the suspension bridge to withstand earthquakes, hurricanes and heavy traffic for a hundred years.
Children learn arithmetic, geography, history, chemistry and biology before they choose a specialisation.
The marathon runner crossed the finish line exhausted but smiling, surrounded by cheering spectators.
Glaciers carve valleys slowly, pushing boulders and gravel ahead of them and leaving moraines behind.
Vaccines train the immune system to recognise viruses and bacteria without causing the disease itself.
Merchants travelled the Silk Road carrying spices, porcelain, jade, wool, horses and paper between empires.
A compiler translates source code into machine instructions; an interpreter executes it line by line.
Submarines navigate underwater using sonar, gyroscopes, ballast tanks and carefully calibrated propellers.
Archaeologists unearthed pottery fragments, bronze coins, jewellery and a mosaic depicting dolphins.
The hospital upgraded its equipment: ultrasound scanners, defibrillators, ventilators and thermometers.
Farmers harvest wheat, barley, maize, potatoes and pumpkins before the autumn frost arrives.
Journalists interviewed the mayor about unemployment, housing, pollution and public transportation.
Musicians improvised jazz melodies with saxophone, trumpet, piano, double bass and drums.
Les enfants jouent dans le jardin pendant que leurs parents préparent le déjeuner à la cuisine.
Nous avons visité un château médiéval, une cathédrale gothique et plusieurs musées très intéressants.
Das Wetter war herrlich, deshalb wanderten wir durch Wälder, über Hügel und entlang eines klaren Flusses.
Die Wissenschaftlerin veröffentlichte eine Studie über Klimawandel, Gletscherschmelze und Meeresspiegel.
Los estudiantes leyeron una novela, escribieron un ensayo y discutieron la historia de la revolución.
En verano viajamos a la costa, nadamos en el mar y comimos paella con mariscos frescos.
Os pescadores saem de madrugada e voltam ao porto com sardinhas, polvos e lulas.
Bears are carnivoran mammals of the family Ursidae; they are classified as caniforms, or doglike carnivorans.
Although only eight species of bears are extant, they are widespread, appearing in a wide variety of habitats throughout the Northern Hemisphere.
Common characteristics of modern bears include large bodies with stout legs, long snouts, small rounded ears, shaggy hair, and short tails.
The polar bear is mostly carnivorous, and the giant panda feeds almost entirely on bamboo, while the other six species are omnivorous.
A search engine ranks documents by their relevance to a query; a reranker scores each pair of query and document again.
Cross-encoders read the query and the document together and return a single number, the relevance score.
Python is a programming language that lets you work quickly and integrate systems more effectively.
The quick brown fox jumps over the lazy dog while the cat sleeps in the warm sun near the window.
Weather today: cloudy in the morning, light rain after noon, and a cold wind from the north in the evening.
The library opens at nine o'clock, closes at six, and is closed on Sundays and public holidays.
Le panda géant est un mammifère de la famille des ursidés qui vit dans les montagnes du centre de la Chine.
Il se nourrit presque exclusivement de bambou, mais il lui arrive de manger des œufs ou des petits animaux.
Où est la bibliothèque ? Elle est à côté du café, près de la gare, derrière l'église.
Der Große Panda ist eine Säugetierart aus der Familie der Bären, die in den Bergwäldern Chinas lebt.
Er frisst fast ausschließlich Bambus und verbringt täglich bis zu vierzehn Stunden mit dem Fressen.
Über den Wolken muss die Freiheit wohl grenzenlos sein, sagt ein bekanntes Lied.
El panda gigante es una especie de mamífero de la familia de los osos, nativo de la región central de China.
¿Qué come el oso panda? Come bambú casi todo el día, y a veces también pequeños animales.
La señora compró piña, limón y azúcar en el mercado del pueblo el sábado por la mañana.
O panda-gigante é um mamífero da família dos ursos que vive nas montanhas da China; não hiberna.
Il panda gigante è un mammifero della famiglia degli orsi; è il simbolo del WWF e della conservazione della natura.
Pandan jättiläinen on karhujen heimoon kuuluva nisäkäs, joka elää Kiinan vuoristometsissä.
Большая панда — млекопитающее семейства медвежьих, обитающее в горных лесах Китая.
大熊猫是中国特有的熊科动物，主要栖息在四川、陕西和甘肃的山区，以竹子为主要食物。
熊猫是中国的国宝，它们每天要花十多个小时吃竹子。
ジャイアントパンダは中国の山岳地帯に生息するクマ科の動物で、主に竹を食べます。
東京は日本の首都で、多くの人が電車で通勤しています。
대왕판다는 중국 중부의 산악 지대에 사는 곰과의 포유류이며 대나무를 주로 먹는다.
"""

# Seeded sentences over the corpus words widen the candidate pieces so the
# unigram trainer can reach SP_VOCAB_SIZE.
SYNTHETIC_LINES = 2000
SYNTHETIC_WORDS = (4, 14)


@dataclass(frozen=True)
class Case:
    """A rerank request whose transformers scores become the reference."""

    name: str
    query: str
    documents: list[str]


LONG_DOCUMENT = " ".join(CORPUS_TEXT.splitlines()[:14])

CASES = [
    Case(
        "panda",
        "What is a panda?",
        [
            "hi",
            "it is a bear",
            "The giant panda (Ailuropoda melanoleuca), sometimes called a panda bear or simply panda,"
            " is a bear species endemic to China.",
        ],
    ),
    Case(
        "unicode",
        "¿Qué come el oso panda?",
        [
            "El panda gigante come bambú casi todo el día.",
            "熊猫是中国的国宝，它们吃竹子。",
            "Ｐａｎｄａｓ ｌｏｖｅ ｂａｍｂｏｏ 🐼🎋",
            "Der Große Panda schläft gern — naïve café façade.",
        ],
    ),
    Case(
        "many",
        "Where do giant pandas live?",
        [
            "Pandas live in the mountains of central China.",
            "Bamboo grows fast.",
            "The polar bear lives on sea ice.",
            "The library closes at six.",
            "Sichuan has many bamboo forests.",
            "A red panda is not a bear.",
            "Python is a programming language.",
            "The fox jumps over the dog.",
            "Bears have small rounded ears.",
            "Light rain after noon.",
            "Giant pandas eat bamboo shoots and leaves.",
            "Farming drove pandas out of the lowlands.",
            "Gansu and Shaanxi are neighbouring provinces.",
            "The cat sleeps in the sun.",
            "Eight species of bears are extant.",
            "A reranker scores query and document pairs.",
            "Pandas in captivity receive honey and eggs.",
            "The church is behind the station.",
            "Bears are widespread in the north.",
            "Cloudy in the morning.",
        ],
    ),
    Case(
        "long",
        "What do giant pandas eat?",
        [
            "Pandas eat bamboo.",
            LONG_DOCUMENT,
            "Bears are mammals.",
        ],
    ),
    Case(
        "whitespace",
        "  What is   a panda?\n",
        [
            "Bamboo   grows\tfast.\n",
            "\u3000ｆｕｌｌ\u3000ｗｉｄｔｈ\u00a0panda  ",
            "e\u0301cole, école, ﬁne ½",
        ],
    ),
    Case(
        "repeat",
        "What is a panda?",
        [
            "The giant panda is a bear species endemic to China.",
            "The giant panda is a bear species endemic to China.",
        ],
    ),
]


def parse_args() -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--llama-cpp-src",
        type=Path,
        help="llama.cpp source tree with convert_hf_to_gguf.py and gguf-py/ (default: fetch the sdist)",
    )
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, help="where fixtures are written")
    return parser.parse_args()


def build_corpus() -> list[str]:
    """Return the training lines: the built-in text plus seeded word shuffles."""
    lines = CORPUS_TEXT.splitlines()
    words = CORPUS_TEXT.split()
    rng = random.Random(CORPUS_SEED)
    for _ in range(SYNTHETIC_LINES):
        lines.append(" ".join(rng.choices(words, k=rng.randint(*SYNTHETIC_WORDS))))
    return lines


def train_sentencepiece(corpus: list[str], work_dir: Path) -> Path:
    """Train a unigram model laid out like XLM-R's (<unk>=0, <s>=1, </s>=2).

    One thread and no sampling keep the result identical between runs.
    """
    corpus_path = work_dir / "corpus.txt"
    corpus_path.write_text("\n".join(corpus) + "\n", encoding="utf-8")
    prefix = work_dir / "spm"
    spm.SentencePieceTrainer.train(
        input=str(corpus_path),
        model_prefix=str(prefix),
        model_type="unigram",
        vocab_size=SP_VOCAB_SIZE,
        character_coverage=1.0,
        normalization_rule_name="nmt_nfkc",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        input_sentence_size=0,
        minloglevel=2,
    )
    return prefix.with_suffix(".model")


def build_tokenizer(sp_model: Path, work_dir: Path) -> XLMRobertaTokenizer:
    """Wrap the SentencePiece model as an XLM-R tokenizer (fairseq id offset)."""
    tok_dir = work_dir / "tokenizer"
    tok_dir.mkdir()
    shutil.copyfile(sp_model, tok_dir / SP_MODEL_NAME)
    return XLMRobertaTokenizer.from_pretrained(tok_dir, model_max_length=MAX_LENGTH)


def model_config(vocab_size: int, reranker: bool) -> XLMRobertaConfig:
    """Tiny bge-reranker-like config; 130 positions leave a 128-token context.

    The embedding model keeps transformers' default labels, which the
    converter drops, like real embedding checkpoints.
    """
    labels = {"num_labels": 1, "id2label": {0: "LABEL_0"}, "label2id": {"LABEL_0": 0}} if reranker else {}
    return XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=MAX_LENGTH + 2,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        initializer_range=INITIALIZER_RANGE,
        **labels,
    )


def save_checkpoint(
    model: torch.nn.Module, tokenizer: XLMRobertaTokenizer, ckpt_dir: Path, cls_pooling: bool = False
) -> None:
    """Save model and tokenizer as a Hugging Face checkpoint like bge-reranker's.

    `cls_pooling` adds the sentence-transformers files real embedding models
    ship, so the converter records CLS pooling in the GGUF.
    """
    model.save_pretrained(ckpt_dir)
    tokenizer.save_pretrained(ckpt_dir)
    # transformers 5 saves only tokenizer.json; real XLM-R checkpoints also
    # ship the SentencePiece model, which the converter prefers.
    shutil.copyfile(tokenizer.vocab_file, ckpt_dir / SP_MODEL_NAME)
    if cls_pooling:
        modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]
        (ckpt_dir / "modules.json").write_text(json.dumps(modules, indent=2))
        (ckpt_dir / "1_Pooling").mkdir()
        (ckpt_dir / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))


def build_models(tokenizer: XLMRobertaTokenizer, work_dir: Path) -> tuple[Path, Path]:
    """Create the seeded reranker and embedding checkpoints; return their dirs."""
    vocab_size = len(tokenizer)
    rerank_dir, embed_dir = work_dir / "reranker", work_dir / "embedder"
    torch.manual_seed(WEIGHTS_SEED)
    save_checkpoint(XLMRobertaForSequenceClassification(model_config(vocab_size, True)), tokenizer, rerank_dir)
    torch.manual_seed(WEIGHTS_SEED)
    save_checkpoint(XLMRobertaModel(model_config(vocab_size, False)), tokenizer, embed_dir, cls_pooling=True)
    return rerank_dir, embed_dir


def save_jina_v2_layout(rerank_dir: Path, out_dir: Path) -> Path:
    """Copy the reranker checkpoint with its tensors renamed (and q, k, v fused) as
    jina-reranker-v2-base-multilingual names them."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(rerank_dir, out_dir)
    weights = load_file(out_dir / "model.safetensors")
    renamed = {}
    for name, tensor in weights.items():
        new = name.replace("roberta.embeddings.LayerNorm", "roberta.emb_ln").replace(".encoder.layer.", ".encoder.layers.")
        for old_part, new_part in ((".attention.output.dense", ".mixer.out_proj"), (".attention.output.LayerNorm", ".norm1"),
                                   (".intermediate.dense", ".mlp.fc1"), (".output.dense", ".mlp.fc2"),
                                   (".output.LayerNorm", ".norm2")):
            new = new.replace(old_part, new_part)
        if ".attention.self.query." in name:
            kind = name.rsplit(".", 1)[1]
            qkv = [weights[name.replace(".query.", f".{part}.")] for part in ("query", "key", "value")]
            new = new.replace(".attention.self.query.", ".mixer.Wqkv.").rsplit(".", 1)[0] + f".{kind}"
            tensor = torch.cat(qkv, dim=0)
        elif ".attention.self." in name:
            continue  # key and value are in Wqkv
        renamed[new] = tensor.contiguous()
    save_file(renamed, out_dir / "model.safetensors", metadata={"format": "pt"})
    return out_dir


def fetch_llama_cpp_src(download_dir: Path) -> Path:
    """Download the pinned llama-cpp-python sdist and return its vendored llama.cpp."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         f"llama-cpp-python=={LLAMA_CPP_PYTHON_VERSION}", "-d", str(download_dir)],
        check=True,
    )
    (sdist,) = download_dir.glob(f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}.tar.gz")
    with tarfile.open(sdist) as tar:
        tar.extractall(download_dir, filter="data")
    return download_dir / f"llama_cpp_python-{LLAMA_CPP_PYTHON_VERSION}" / "vendor" / "llama.cpp"


def convert(llama_cpp_src: Path, ckpt_dir: Path, out_path: Path, outtype: str = "f32") -> None:
    """Run llama.cpp's converter with this interpreter and the tree's own gguf-py."""
    env = {**os.environ, "PYTHONPATH": str(llama_cpp_src / "gguf-py")}
    subprocess.run(
        [sys.executable, str(llama_cpp_src / "convert_hf_to_gguf.py"), str(ckpt_dir),
         "--outtype", outtype, "--outfile", str(out_path)],
        check=True,
        env=env,
    )


def copy_without_keys(src: Path, dst: Path, removed: tuple[str, ...]) -> None:
    """Copy a GGUF minus some metadata keys, as older converters produced.

    GGUFWriter writes `general.architecture` and the `GGUF.*` header fields
    itself, so those are not copied.
    """
    reader = gguf.GGUFReader(src)
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE).contents()
    writer = gguf.GGUFWriter(dst, arch=arch, endianess=reader.endianess)
    for field in reader.fields.values():
        if field.name in removed or field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for tensor in reader.tensors:
        writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes, tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()


def score_case(model: XLMRobertaForSequenceClassification, tokenizer: XLMRobertaTokenizer, case: Case) -> dict:
    """Score every (query, document) pair the way the service must reproduce."""
    encodings = [
        tokenizer(case.query, doc, truncation="only_second", max_length=MAX_LENGTH, return_tensors="pt")
        for doc in case.documents
    ]
    with torch.no_grad():
        scores = [model(**enc).logits[0, 0].item() for enc in encodings]
    full_lengths = [len(tokenizer(case.query, doc, verbose=False)["input_ids"]) for doc in case.documents]
    return {
        "name": case.name,
        "query": case.query,
        "documents": case.documents,
        "scores": scores,
        "pair_tokens": [enc["input_ids"].shape[1] for enc in encodings],
        "truncated": [length > MAX_LENGTH for length in full_lengths],
        "first_pair_ids": encodings[0]["input_ids"][0].tolist(),
    }


def check_case(case: dict) -> None:
    """Fail unless distinct documents score clearly apart and repeats score equal.

    Otherwise a parity test could pass while pairing scores with the wrong
    documents.
    """
    by_doc: dict[str, float] = {}
    for doc, score in zip(case["documents"], case["scores"]):
        if doc in by_doc and by_doc[doc] != score:
            raise SystemExit(f"case {case['name']}: equal documents score {by_doc[doc]} and {score}")
        by_doc[doc] = score
    distinct = sorted(by_doc.values())
    gap = min((b - a for a, b in zip(distinct, distinct[1:])), default=MIN_SCORE_GAP)
    if gap < MIN_SCORE_GAP:
        raise SystemExit(f"case {case['name']}: scores only {gap:.4g} apart; change WEIGHTS_SEED or INITIALIZER_RANGE")


def build_reference(rerank_dir: Path) -> dict:
    """Compute the reference from the saved checkpoint, as a user would load it."""
    tokenizer = XLMRobertaTokenizer.from_pretrained(rerank_dir)
    model = XLMRobertaForSequenceClassification.from_pretrained(rerank_dir, dtype=torch.float32).eval()
    cases = [score_case(model, tokenizer, case) for case in CASES]
    for case in cases:
        check_case(case)
    torch_version = torch.__version__.split("+")[0]
    return {
        "model": RERANKER_GGUF,
        "max_length": MAX_LENGTH,
        "generator": f"scripts/make_fixtures.py (transformers {transformers.__version__}, torch {torch_version})",
        "cases": cases,
    }


def check_sizes(paths: list[Path]) -> None:
    """Keep fixtures small enough to commit."""
    for path in paths:
        if path.stat().st_size > MAX_GGUF_BYTES:
            raise SystemExit(f"{path} is {path.stat().st_size} bytes, over {MAX_GGUF_BYTES}")


def print_summary(reference: dict, outputs: list[Path]) -> None:
    """Show what was written and the score range of each case."""
    for path in outputs:
        print(f"{path.name}: {path.stat().st_size} bytes")
    for case in reference["cases"]:
        scores = case["scores"]
        print(f"{case['name']:10s} n={len(scores):2d} min={min(scores):+.6f} max={max(scores):+.6f}"
              f" tokens={min(case['pair_tokens'])}..{max(case['pair_tokens'])} truncated={sum(case['truncated'])}")


def main() -> None:
    """Build checkpoints in a temporary dir, convert them, write the reference."""
    args = parse_args()
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="make_fixtures-") as tmp:
        work_dir = Path(tmp)
        llama_cpp_src = args.llama_cpp_src or fetch_llama_cpp_src(work_dir / "sdist")
        tokenizer = build_tokenizer(train_sentencepiece(build_corpus(), work_dir), work_dir)
        rerank_dir, embed_dir = build_models(tokenizer, work_dir)
        reference = build_reference(rerank_dir)
        ggufs = [out_dir / RERANKER_GGUF, out_dir / NOKEYS_GGUF, out_dir / EMBED_GGUF, out_dir / JINA_V2_GGUF]
        convert(llama_cpp_src, rerank_dir, ggufs[0])
        copy_without_keys(ggufs[0], ggufs[1], REMOVED_KEYS)
        convert(llama_cpp_src, embed_dir, ggufs[2])
        convert(llama_cpp_src, save_jina_v2_layout(rerank_dir, work_dir / "jina-v2-layout"), ggufs[3])
        shutil.rmtree(out_dir / CHECKPOINT_DIR, ignore_errors=True)
        shutil.copytree(rerank_dir, out_dir / CHECKPOINT_DIR)
    check_sizes(ggufs)
    reference_path = out_dir / REFERENCE_JSON
    reference_path.write_text(json.dumps(reference, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print_summary(reference, [*ggufs, reference_path])


if __name__ == "__main__":
    main()
