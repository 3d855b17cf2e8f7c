"""Base language models: fetch from the Hugging Face Hub, read local folders, convert GGUF files once."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch

from .errors import StockLLMError
from .memory import keep_heap_small
from .outputs import clean_stale

# What a base model needs; skips other frameworks' weights and pickled .bin files.
MODEL_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.tiktoken", "*.py"]


def hub_download(repo_id: str, local_dir: str | None = None, revision: str | None = None) -> str:
    """THE one function that downloads model files (huggingface_hub); tests replace it.

    Returns the folder holding the snapshot. With ``local_dir`` None it uses (or fills) the Hub cache.
    """
    from huggingface_hub import snapshot_download

    return snapshot_download(repo_id, local_dir=local_dir, revision=revision, allow_patterns=MODEL_FILES)


def _offline_error(repo_id: str, exc: Exception, flag: str = "--model_path",
                   downloading: bool = False) -> StockLLMError:
    """One line for a Hub failure; only the exception's type is shown (its text carries URLs and curl output)."""
    what = (f"could not get model {repo_id!r} from the Hugging Face Hub ({type(exc).__name__}; offline, or not a "
            "model id?)")
    if downloading:  # the user ran download-model already: telling them to run it again does not help
        return StockLLMError(f"{what}: check the network connection and the id (e.g. Qwen/Qwen3-0.6B), or copy the "
                             "model folder from a machine that reaches the Hub and pass --model_path DIR")
    gguf = " or a .gguf file" if flag == "--model_path" else ""
    return StockLLMError(f"{what}: run `stockllm download-model --model {repo_id} --save_dir DIR` where the Hub is "
                         f"reachable, then pass {flag} DIR (a local folder{gguf})")


def download_model(repo_id: str, save_dir: str, revision: str | None = None) -> Path:
    """Download a base model's config, tokenizer and safetensors weights into ``save_dir``."""
    try:
        hub_download(repo_id, local_dir=save_dir, revision=revision)
    except (OSError, ValueError) as exc:
        raise _offline_error(repo_id, exc, downloading=True) from None
    except Exception as exc:  # huggingface_hub raises several HTTP error types that are not OSErrors
        if type(exc).__module__.startswith(("huggingface_hub", "httpx", "requests")):
            raise _offline_error(repo_id, exc, downloading=True) from None
        raise
    return Path(save_dir)


def cache_root() -> Path:
    """stockllm's cache folder (converted GGUF models, yfinance's caches): $STOCKLLM_CACHE or ~/.cache/stockllm."""
    return Path(os.environ.get("STOCKLLM_CACHE", Path.home() / ".cache" / "stockllm"))


def gguf_to_folder(gguf_path: Path) -> Path:
    """Convert a .gguf file once into a safetensors folder (config, tokenizer, weights) and return the folder.

    GGUF loading spends 24–29 s parsing metadata and dequantising; the cached copy reloads in well under a
    second. The cache key covers the file's absolute path, size and mtime, so a changed file is converted again.
    """
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_root() / "gguf" / f"{gguf_path.stem}-{key}"
    if (target / "config.json").is_file():
        return target
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise StockLLMError(f"reading {gguf_path} needs the gguf package: pip install 'stockllm[gguf]'") from None
    from transformers import AutoModel, AutoTokenizer

    print(f"converting {gguf_path.name} to safetensors once (cached in {target}) ...", flush=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModel.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001 - any parse failure means the same thing to the user
        raise StockLLMError(f"could not read GGUF file {gguf_path}: {exc}; pass a GGUF model transformers supports "
                            "(llama, qwen2, qwen3, mistral, ...) or a model folder") from None
    # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer; the weights are
    # already dequantised to float, so dropping it is safe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(target)  # conversions a killed run left half done
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-{os.getpid()}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if (target / "config.json").is_file():  # another process (e.g. another rank) converted it first
            return target
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def resolve_model_path(model_path: str, flag: str = "--model_path") -> Path:
    """A local folder holding config.json for any base model reference: folder, .gguf file or Hub id. ``flag``
    names the option that gave it, in messages."""
    path = Path(model_path).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise StockLLMError(f"GGUF file {model_path} does not exist: check --model_path")
        return gguf_to_folder(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise StockLLMError(f"{model_path} has no config.json: pass a model folder (from `stockllm "
                                "download-model`) or a .gguf file to --model_path")
        return path
    if path.exists() or model_path.startswith((".", "/", "~")) or model_path.count("/") != 1:
        raise StockLLMError(f"model {model_path!r} not found: pass a model folder, a .gguf file or a Hugging Face "
                            f"id such as Qwen/Qwen3-0.6B to {flag}")
    try:
        return Path(hub_download(model_path))
    except Exception as exc:  # noqa: BLE001 - see download_model
        if isinstance(exc, (OSError, ValueError)) or type(exc).__module__.startswith(("huggingface_hub", "httpx")):
            raise _offline_error(model_path, exc, flag) from None
        raise


def is_causal(config) -> bool:
    """Whether a base model's ``AutoModel`` attends only to earlier tokens (a decoder-only LM: Llama, Qwen, GPT...).

    Encoder-decoders, and encoders that double as masked LMs (BERT, RoBERTa) unless configured as decoders,
    attend both ways, so a later day would leak into an earlier day's read within one chunk.
    """
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    if getattr(config, "is_encoder_decoder", False) or config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        return False
    return config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES or bool(getattr(config, "is_decoder", False))


def random_base(folder, *, dtype: torch.dtype, seed: int, trust_remote_code: bool = False):
    """The base model's architecture (``config.json`` in ``folder``) with random weights: ``AutoModel.from_config``
    and the model's own initialisation, drawn from ``seed`` (the same seed gives the same weights on a machine,
    so a checkpoint trained on it reloads exactly without storing the base)."""
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):  # the caller's random stream (LoRA's init) is left as it was
        torch.manual_seed(seed)
        model = AutoModel.from_config(config, dtype=dtype, attn_implementation="sdpa",
                                      trust_remote_code=trust_remote_code)
    return model


def load_base(model_path: str, *, device: torch.device, dtype: torch.dtype, trust_remote_code: bool = False,
              random_init: bool = False, seed: int = 0):
    """Load (backbone without LM head, tokenizer, local folder) for a base model reference.

    The backbone is ``AutoModel`` (vocab logits are never used) with SDPA attention, frozen, in ``dtype``. On a
    CPU it also keeps freed activations from piling up in the heap (``keep_heap_small``). ``random_init``: the
    same architecture and tokenizer with random weights from ``seed`` (``random_base``), for the ablation.
    """
    from transformers import AutoModel, AutoTokenizer

    folder = resolve_model_path(model_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        if random_init:
            model = random_base(folder, dtype=dtype, seed=seed, trust_remote_code=trust_remote_code)
        else:
            model = AutoModel.from_pretrained(folder, dtype=dtype, attn_implementation="sdpa",
                                              trust_remote_code=trust_remote_code)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise StockLLMError(f"{model_path} ships its own Python code: read it, then pass --trust_remote_code "
                                "to allow it") from None
        raise StockLLMError(f"could not load base model from {folder}: {exc}") from None
    except OSError as exc:
        raise StockLLMError(f"could not load base model from {folder}: {exc}") from None
    model.to(device)
    model.requires_grad_(False)
    if device.type == "cpu":
        keep_heap_small()
    return model, tokenizer, folder
