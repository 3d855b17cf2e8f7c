"""``stockllm train`` as one library call, with its resume and warm-start policy.

``run_train(options, say)`` is what the CLI runs and what ``stockllm.train(...)`` runs. An exact resume
(``resume=True``) continues the interrupted run in ``save_dir`` with its recorded settings; a warm start
(``resume="DIR"``, the LLM only) loads a finished checkpoint's weights and keeps the settings that shaped them.
Either refuses a given setting that differs from the recorded one, naming it. The loop itself is
``stockllm.loop``.
"""

from __future__ import annotations

import dataclasses
import json
import math

from .config import DataConfig, LoRAConfig, flat_dict, flat_fields, from_dict, from_flat
from .errors import StockLLMError
from .progress import epochs_words
from .models.registry import TRAINED, spec
from .options import TrainOptions, check_close_only

# Settings a warm start (resume=DIR) keeps from the checkpoint: they shape the weights it loads.
WARM_FROZEN = ("model_path", "prompt_format", "lora_rank", "lora_alpha", "target_modules", "lora_layers",
               "head_base", "random_init")


def run_train(opts: TrainOptions, say=lambda *_: None):
    """Train ``opts.model`` on ``opts.data`` and save it in ``opts.save_dir`` (None: keep it in memory only);
    returns the fitted Forecaster. Every check that needs no data comes first, before torch loads."""
    from .checkpoint import check_target
    from .outputs import check_not_inputs
    from .series import data_files
    from .models import model_class

    model_name, settings = opts.model, opts.settings
    spec(model_name)  # an unknown name answers at once
    opts.data.csv_options()
    data = opts.data.config()
    settings.check_features(data, settings.with_members([model_name]))
    _check_resume(opts)
    settings.check_for(settings.with_members([model_name]), f"--model {model_name}")
    config = settings.config(model_name)  # save_every included (and range-checked)
    if opts.save_dir is not None:
        check_target(opts.save_dir)  # before training: a bad path must not cost a training run
        check_not_inputs([*data_files(opts.data.data), ("--resume", opts.resume if isinstance(opts.resume, str)
                                                          else None)], folders=[("--save_dir", opts.save_dir)])
    if opts.resume is True:
        data, config = resumed_settings(opts)
    frames = opts.data.load(data.min_rows + 1, f"window {data.window_size} + horizon {data.horizon} + 1", say)
    check_close_only(frames, [model_name])
    if isinstance(opts.resume, str):
        _recorded(opts.resume, "data", opts.data.given(), tuple(vars(data)))  # refuses changed settings
        model = model_class(model_name).load(opts.resume, train_config=warm_start_config(opts, config))
    else:
        model = _build(model_name, data, config) if opts.resume is True else settings.factory(model_name, data)()
    fit_kwargs = {"save_dir": opts.save_dir, "resume": opts.resume is True} if model_name in TRAINED else {}
    model.fit(list(frames.values()), progress=opts.progress, **fit_kwargs)
    if opts.save_dir is not None:
        model.save(opts.save_dir)
    _say_fit(model, say)
    report_resources(model, say)
    if opts.save_dir is not None:
        say(f"saved checkpoint to {opts.save_dir}")
    return model


def _build(name: str, data: DataConfig, config):
    from .models import model_class

    return model_class(name)(data, config)


def _check_resume(opts: TrainOptions) -> None:
    """Refuse a resume the model or the options cannot have."""
    if opts.resume is None or opts.resume is False:
        return
    if opts.model not in TRAINED:
        raise StockLLMError(f"--resume is for --model {', '.join(TRAINED)}; the {opts.model} fits in seconds, so fit "
                            "it again without --resume")
    if isinstance(opts.resume, str) and opts.model != "lora":
        raise StockLLMError(f"--resume {opts.resume} (a warm start from a finished checkpoint) is for --model lora; "
                            f"the {opts.model} trains quickly: train it afresh, or pass --resume alone to continue "
                            "the interrupted run in --save_dir")
    if opts.resume is True and opts.save_dir is None:
        raise StockLLMError("--resume continues the run saved in --save_dir: pass the --save_dir of that run")


def _say_fit(model, say) -> None:
    """The fit record in a few lines: the best validation against the start, why training stopped, notes."""
    info = model.fit_info
    if math.isfinite(info.get("naive_val_loss", math.nan)) and info["naive_val_loss"] > 0:
        where = f"epoch {info['best_epoch']}" if "best_epoch" in info else f"step {info['best_step']}"
        start = {"fhs": "FHS start", "gaussian": "naive start"}.get(info.get("start"), "untrained")
        say(f"best {where}: val_loss {info['best_val_loss']:.4f} ({start} {info['naive_val_loss']:.4f}, "
            f"ratio {info['best_val_loss'] / info['naive_val_loss']:.3f})")
    if info.get("stop_reason"):
        say(f"training stopped at step {info['steps']} ({epochs_words(info.get('epochs_run', 0))}): "
            f"{info['stopped_because']} [{info['stop_reason']}]")
    if "weights" in info:
        say(f"ensemble weights (fitted on the validation dates from {info['validation_start']}): "
            f"{model.describe() or 'none'}")
    for note in info.get("notes", []):
        say(f"note: {note}")


def report_resources(model, say) -> None:
    """Trainable parameters and peak memory, in two lines."""
    from .memory import peak_memory_mb  # not .device: naive and drift need not load torch to say this

    mb, label = peak_memory_mb()
    say(f"trainable parameters: {model.num_trainable_parameters():,}{model.trainable_parameters_detail()}")
    say(f"peak memory: {mb:,.0f} MB ({label})")


def _recorded(where: str, section: str, given: dict, keys: tuple, recorded: dict | None = None) -> dict:
    """The ``keys`` of a checkpoint's (or state's) recorded ``section``, refusing given settings that differ."""
    from .checkpoint import read_meta

    recorded = read_meta(where).get(section, {}) if recorded is None else recorded
    out = {k: recorded[k] for k in keys if k in recorded}
    for key in keys:
        if key not in given:
            continue
        if key in out and _canon(given[key]) != _canon(out[key]):
            raise StockLLMError(f"--{key} {_show(given[key])} differs from {_show(out[key])} recorded in {where}: "
                                f"resume with the same --{key} (or leave it out), or train afresh without --resume")
        out[key] = given[key]
    return out


def _canon(value) -> str:
    return json.dumps(list(value) if isinstance(value, tuple) else value, sort_keys=True)


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) or "none"
    return str(value)


def warm_start_config(opts: TrainOptions, config: LoRAConfig) -> LoRAConfig:
    """This run's config, with the weight-shaping settings taken from the checkpoint ``opts.resume`` (refused if
    given and changed)."""
    from .checkpoint import read_meta
    from .config import old_head_base

    saved = old_head_base(read_meta(opts.resume).get("config", {}))
    recorded = flat_dict(from_dict(LoRAConfig, saved, source=opts.resume))
    given = opts.settings.given(LoRAConfig)
    frozen = _recorded(opts.resume, "config", given, WARM_FROZEN, recorded)
    if frozen.get("random_init"):  # the random base is drawn from the seed: another seed, another base
        frozen.update(_recorded(opts.resume, "config", given, ("seed",), recorded))
    return from_flat(LoRAConfig, {**flat_dict(config), **frozen})


def resumed_settings(opts: TrainOptions):
    """(DataConfig, model config) for an exact resume: the interrupted run's, with per-run settings from this run.

    Settings not given are taken from the saved state; a given setting that differs from it is refused, since the
    saved optimizer, schedule and data position only continue the run they came from.
    """
    from .loop import latest_state, read_loop_state

    state = latest_state(opts.save_dir)
    fingerprint = read_loop_state(state).get("fingerprint", {})
    where = str(state)
    kind = fingerprint.get("kind", "lora")  # LLM states from before the MLP saved state do not record it
    if kind != opts.model:
        raise StockLLMError(f"the training state in {where} comes from a --model {kind} run, not --model "
                            f"{opts.model}: resume with --model {kind}, or train afresh without --resume")
    data = _recorded(where, "data", opts.data.given(), tuple(f.name for f in dataclasses.fields(DataConfig)),
                     recorded=fingerprint.get("data", {}))
    cls = spec(opts.model).config_class()
    saved = fingerprint.get("config", {})
    given = opts.settings.given(cls)
    config = _recorded(where, "config", given, tuple(saved), recorded=saved)
    per_run = {k: v for k, v in given.items() if k not in saved}
    known = set(flat_fields(cls))  # a state from an older stockllm may record settings this one dropped
    return from_dict(DataConfig, data), from_flat(cls, {k: v for k, v in {**config, **per_run}.items() if k in known})
