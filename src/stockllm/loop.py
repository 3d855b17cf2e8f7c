"""The training loop, apart from the models: accelerate runs it (devices, DDP, gradient accumulation, clipping,
training state and RNG), transformers gives the learning-rate schedule.

What is ours: validation every ``eval_every`` steps with early stopping, where the untrained model (which
predicts like naive) is the first candidate for the best state; the ``max_train_seconds`` budget; notes on
the bounds that were applied; periodic training state under ``<save_dir>/state/`` that an interrupted run
resumes from exactly; and a clean stop on SIGINT/SIGTERM.

State folder ``<save_dir>/state/step-NNNNNNNN/`` (written under a temporary name, then renamed):
``model.safetensors`` (trainable weights only: LoRA + head), ``optimizer.bin``, ``scheduler.bin``,
``random_states_<rank>.pkl`` (accelerate's files, read back with ``torch.load(weights_only=True)``),
``best.safetensors`` (the best weights so far) and ``loop.json`` (step, data position, best score, history,
the settings it was trained with). The loop's own state is JSON and safetensors rather than accelerate's
registered custom objects, because accelerate unpickles those with ``weights_only=False``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm.auto import tqdm

from .checkpoint import read_safetensors
from .config import TrainConfig
from .device import bind_device, mixed_precision, resolve_device
from .errors import StockLLMError, TrainingInterrupted
from .outputs import usual_modes, write_failure
from .progress import progress_bar

STATE_DIR = "state"
LOOP_FILE = "loop.json"
BEST_FILE = "best.safetensors"
MODEL_FILE = "model.safetensors"  # accelerate's name for the first model's weights
KEEP_STATES = 2  # the newest states kept; older ones are removed once a newer one is complete
_STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class Task:
    """What the loop needs from a model. The model module owns the forward pass, the loss and the checkpoint.

    module: parameters with ``requires_grad`` are trained (LoRA + head; the base stays frozen).
    train_data: samples, batched by ``collate`` into a dict of tensors.
    loss: ``loss(module, batch) -> scalar`` mean loss of the batch (forward + the model module's loss).
    validate: ``validate(module, progress, shard) -> (loss sum, count)`` over the validation targets of
        ``shard`` = (rank, ranks): this process's share when the data is split over several, (0, 1) for all of
        them; (0.0, 0) without a validation part. The loop sums the shares of all processes, so every process
        reads the same validation loss (sum ÷ count).
    naive_val: the validation loss of the untrained model (its head base: FHS, or the naive walk).
    count: ``count(batch) -> (tokens, targets)`` read in a batch, for throughput.
    fingerprint: the settings and data an exact resume must share with the saved state.
    save_checkpoint: ``save_checkpoint(fit_info)`` writes the usable checkpoint while ``module`` holds the best
        weights (None: nothing is written, as in ``evaluate``).
    data_parallel: under several processes (accelerate launch, torchrun), split the data and average the
        gradients (DDP). False: every process trains the whole model on all the data by itself, as one process
        would (the MLP, which ``evaluate`` fits in every process and which must match a one-process run).
    """

    module: nn.Module
    train_data: Sequence
    collate: Callable[[list], dict]
    loss: Callable[[nn.Module, dict], torch.Tensor]
    validate: Callable[[nn.Module, bool], float]
    naive_val: float
    count: Callable[[dict], tuple[int, int]]
    fingerprint: dict = field(default_factory=dict)
    save_checkpoint: Callable[[dict], None] | None = None
    data_parallel: bool = True


# --- state folders ---------------------------------------------------------------------------------------------
def state_dirs(save_dir: str | os.PathLike) -> list[Path]:
    """Complete state folders under ``<save_dir>/state/``, oldest first (temporary folders are skipped)."""
    root = Path(save_dir) / STATE_DIR
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found) if (p / LOOP_FILE).is_file()]


def latest_state(save_dir: str | os.PathLike) -> Path:
    """The newest complete state folder, or a clear error when there is none."""
    found = state_dirs(save_dir)
    if not found:
        raise StockLLMError(f"no saved training state in {Path(save_dir) / STATE_DIR}: --resume without a folder "
                            "continues a run that saved state (--save_every); pass --resume CHECKPOINT to warm-start "
                            "from a finished checkpoint instead")
    return found[-1]


def read_loop_state(state: Path) -> dict:
    """``loop.json`` of a state folder."""
    try:
        return json.loads((state / LOOP_FILE).read_text())
    except (OSError, ValueError) as exc:
        raise StockLLMError(f"unreadable training state {state / LOOP_FILE}: {exc}; resume from an older state "
                            f"by deleting {state}") from None


# --- interrupts --------------------------------------------------------------------------------------------------
@contextmanager
def _interrupts():
    """SIGINT/SIGTERM set a flag that the loop reads after each optimizer step; a second signal abandons the step
    at once (state saved earlier stays valid, since every save is complete before it is renamed into place)."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum, frame):
        if got:
            raise TrainingInterrupted(signum, None, step=None)
        got.append(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# --- the loop ----------------------------------------------------------------------------------------------------
def fit(task: Task, cfg: TrainConfig, *, device: str = "auto", progress: bool = True,
        save_dir: str | os.PathLike | None = None, resume: bool = False, label: str = "train") -> dict:
    """Train ``task.module`` in place and leave the best validation state in it; returns the fit record.

    ``cfg``: the loop settings (``TrainConfig``; its ``batch_size`` must be set). ``device``: where to train
    (``device.resolve_device``). Validation runs every ``cfg.eval_every`` optimizer steps inside an epoch and at
    every epoch's end. With ``save_dir``, state is saved at every ``cfg.save_every``-th validation (and when
    training stops, and on SIGINT/SIGTERM) and the best checkpoint is written beside it; ``resume`` continues from
    the newest state there.
    """
    run = _Loop(task, cfg, device=device, progress=progress, save_dir=save_dir, resume=resume, label=label)
    run.start()
    return run.loop_over_epochs()


class _Loop:
    """One call of :func:`fit`: the prepared model, optimizer, loader and schedule, and the loop's counters
    (``self.loop``, saved with every training state). Its methods are the parts of the loop: ``start`` (fresh or
    resumed), ``loop_over_epochs`` and ``step`` (the training), ``validation`` with ``stop_policy`` (the kept weights
    and early stopping), and ``save_point`` (the checkpointing)."""

    def __init__(self, task: Task, cfg: TrainConfig, *, device, progress, save_dir, resume, label):
        from accelerate import Accelerator, DataLoaderConfiguration
        from accelerate.utils import set_seed

        set_seed(cfg.seed)
        device, _ = resolve_device(device)
        self.task, self.cfg, self.progress, self.resume, self.label = task, cfg, progress, resume, label
        self.accelerator = accelerator = Accelerator(
            gradient_accumulation_steps=cfg.grad_accum, cpu=device.type == "cpu",
            mixed_precision=mixed_precision(device),
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=cfg.seed))
        bind_device(device, accelerator.num_processes)
        self.main = accelerator.is_main_process
        # Every line names its model: an evaluate run may train several (and an ensemble's members twice).
        self.say = ((lambda m: tqdm.write(f"{label}: {m}")) if (progress and accelerator.is_local_main_process)
                    else (lambda *_: None))
        self.save_dir = Path(save_dir) if save_dir is not None and cfg.save_every else None
        self.alone = not task.data_parallel and accelerator.num_processes > 1
        if self.alone and self.save_dir is not None:
            raise StockLLMError(f"{label} trains in one process, and this run has {accelerator.num_processes} "
                                "(accelerate launch or torchrun): run it as a plain `stockllm train`")
        self.module = task.module
        self._prepare()
        self._schedule()
        self._hooks()
        self.loop = {"step": 0, "epoch": 0, "batch": 0, "best_val_loss": None, "best_step": 0, "bad": 0,
                     "history": [], "train_seconds": 0.0, "tokens": 0, "targets": 0, "notes": [], "running": 0.0,
                     "n_batches": 0, "stop_reason": None, "validations": 0}
        self.has_val = math.isfinite(task.naive_val)
        self.fresh_state = not resume
        self.best: dict | None = None

    # --- set-up ----------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """The model, optimizer and loader, prepared by accelerate (alone: no DDP, no sharding)."""
        cfg, accelerator = self.cfg, self.accelerator
        optimizer = torch.optim.AdamW([p for p in self.module.parameters() if p.requires_grad], lr=cfg.learning_rate,
                                      weight_decay=cfg.weight_decay)
        # Its own generator: a loader without one draws from the global RNG whenever an epoch starts, so a
        # resumed run (a new iterator mid-epoch) would see other dropout masks than the run it continues.
        loader = torch.utils.data.DataLoader(self.task.train_data, batch_size=cfg.batch_size, shuffle=True,
                                             collate_fn=self.task.collate,
                                             generator=torch.Generator().manual_seed(cfg.seed))
        if self.alone:
            from accelerate.data_loader import prepare_data_loader

            # No DDP wrapper (evaluation_mode skips it), no sharding and no RNG broadcast: nothing here waits for
            # the other processes, which train the same model by themselves.
            self.model = accelerator.prepare_model(self.module, evaluation_mode=True)
            self.optimizer = accelerator.prepare_optimizer(optimizer)
            self.loader = prepare_data_loader(loader, accelerator.device, num_processes=1, process_index=0,
                                              put_on_device=True, use_seedable_sampler=True, data_seed=cfg.seed)
        else:
            self.model, self.optimizer, self.loader = accelerator.prepare(self.module, optimizer, loader)

    def _schedule(self) -> None:
        """The planned steps and the learning-rate schedule."""
        cfg, accelerator = self.cfg, self.accelerator
        self.steps_per_epoch = max(math.ceil(len(self.loader) / cfg.grad_accum), 1)
        self.total = self.steps_per_epoch * cfg.epochs
        self.capped = bool(cfg.max_steps and cfg.max_steps < self.total)  # --max_steps ends the run first
        if self.capped:
            self.total = cfg.max_steps
        # accelerate steps a prepared scheduler once per process per optimizer step, so its horizon is scaled.
        self.nproc = nproc = accelerator.num_processes
        warmup = round(cfg.warmup_ratio * self.total) * nproc
        if cfg.lr_scheduler == "constant" and not warmup:
            # No schedule to compute: torch's own, which spares the MLP the seconds that importing transformers
            # costs.
            schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda _: 1.0)
        else:
            from transformers import get_scheduler

            schedule = get_scheduler({"constant": "constant_with_warmup"}.get(cfg.lr_scheduler, cfg.lr_scheduler),
                                     self.optimizer, num_warmup_steps=warmup, num_training_steps=self.total * nproc)
        self.schedule = schedule
        self.scheduler = accelerator.prepare(schedule)

    def _hooks(self) -> None:
        """Training states hold what training changes; the frozen base is the user's model file."""
        model = self.model
        # Prepared (maybe DDP-wrapped, "module."-prefixed) names of the trained parameters.
        save_names = {n for n, p in model.named_parameters() if p.requires_grad}

        def keep_trainable(models, weights, output_dir):
            weights[0] = {k: v for k, v in weights[0].items() if k in save_names}

        def load_trainable(models, input_dir):
            models.remove(model)
            tensors = read_safetensors(Path(input_dir) / MODEL_FILE)
            if set(tensors) != set(save_names):
                raise StockLLMError(f"the training state in {input_dir} holds other weights than this model trains: "
                                    "resume with the same flags as the interrupted run")
            model.load_state_dict(tensors, strict=False)

        self.accelerator.register_save_state_pre_hook(keep_trainable)
        self.accelerator.register_load_state_pre_hook(load_trainable)

    def trainable(self) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in self.accelerator.unwrap_model(self.model).named_parameters()
                if p.requires_grad}

    # --- start -----------------------------------------------------------------------------------------------
    def start(self) -> None:
        """A fresh run validates the untrained model (the first candidate for the best state); a resumed one
        restores the newest state in save_dir."""
        if self.resume:
            self._restore()
            return
        if self.save_dir is not None and self.main and state_dirs(self.save_dir):
            self.say(f"note: starting afresh; the training state in {self.save_dir / STATE_DIR} from an earlier run "
                     "is replaced at the first save (pass --resume to continue it instead)")
        self.loop["best_val_loss"] = self.validate()
        self.best = self.trainable()
        self.say(f"step 0: val_loss {self.loop['best_val_loss']:.4f} (untrained {self.task.naive_val:.4f})")

    def _restore(self) -> None:
        loop, cfg = self.loop, self.cfg
        state = latest_state(self.save_dir)
        saved = read_loop_state(state)
        check_fingerprint(saved.get("fingerprint", {}), self.task.fingerprint, state)
        try:
            self.accelerator.load_state(str(state))
        except Exception as exc:  # noqa: BLE001 - torch.load's own words for a tampered file advise unsafe loading
            raise StockLLMError(f"cannot read the training state in {state} ({type(exc).__name__}): it "
                                f"is damaged or was edited; delete {state} to resume from an earlier state, or "
                                "train afresh without --resume") from None
        self.best = read_safetensors(state / BEST_FILE)
        notes = loop["notes"]
        loop.update(saved["loop"])
        loop["notes"] = sorted(set(loop["notes"]) | set(notes))
        self.say(f"resumed from {state}: step {loop['step']} of {self.total}, epoch {loop['epoch'] + 1}")
        # A run that ended on a budget (steps, seconds, epochs) goes on when this run's budget is larger; one that
        # early stopping ended stays ended (its validation said stop).
        if loop.get("stopped") and loop.get("stop_reason") in ("max_steps", "max_train_seconds", "epochs") and \
                loop["step"] < self.total and loop["epoch"] < cfg.epochs and \
                not (cfg.max_train_seconds and loop["train_seconds"] >= cfg.max_train_seconds):
            self.say(f"the saved run had stopped ({stop_words(loop['stop_reason'])}); this run's budget allows "
                     "more, so training goes on")
            loop["stopped"], loop["stop_reason"] = False, None
            budget = ("stopped after --max_steps", "stopped at the --max_train_seconds")  # the old run's budget notes
            loop["notes"] = [n for n in loop["notes"] if not n.startswith(budget)]
            # The optimizer's saved learning rate is the old schedule's last (0 at the end of a cosine): take the
            # new schedule's value at this step, or the extra steps would train at a rate of 0.
            schedule = self.schedule
            for group, base_lr, rate in zip(self.optimizer.param_groups, schedule.base_lrs, schedule.lr_lambdas):
                group["lr"] = base_lr * rate(schedule.last_epoch)

    # --- validation and the stop policy ------------------------------------------------------------------------
    def validate(self) -> float:
        """The validation loss, each process reading its share of the validation set and all of them the sum."""
        accelerator = self.accelerator
        shard = (0, 1) if self.alone else (accelerator.process_index, accelerator.num_processes)
        total, count = self.task.validate(accelerator.unwrap_model(self.model),
                                          self.progress and accelerator.is_local_main_process, shard)
        self.model.train()  # validation leaves the model in eval mode; dropout must be back on for the next step
        if shard[1] > 1:
            # All-reduce leaves the same sum on every rank, so all take the same best-state and stop decisions
            # (a rank deciding alone would leave the others waiting in the next gradient all-reduce).
            sums = accelerator.reduce(torch.tensor([total, count], dtype=torch.float64, device=accelerator.device),
                                      reduction="sum")
            total, count = sums.tolist()
        return total / count if count else float("nan")

    def validation(self, train_loss: float) -> bool:
        """Validate, record the history line and apply the stop policy; True when early stopping says stop."""
        loop = self.loop
        val = self.validate()
        loop["validations"] += 1
        # At an epoch's end the counter has already moved on (batch back at 0): the step belongs to that epoch.
        epoch = loop["epoch"] + (1 if loop["batch"] else 0)
        loop["history"].append({"epoch": epoch, "step": loop["step"], "train_loss": train_loss,
                                "val_loss": val, "lr": self.scheduler.get_last_lr()[0]})
        self.say(f"step {loop['step']} (epoch {epoch}): train_loss {train_loss:.4f}  val_loss {val:.4f} "
                 f"(untrained {self.task.naive_val:.4f})")
        return self.stop_policy(val)

    def stop_policy(self, val: float) -> bool:
        """Keep the weights of a validation gain of at least min_delta (relative; less is noise: it neither moves
        the kept weights nor resets the count); True after ``patience`` validations without one."""
        loop, cfg = self.loop, self.cfg
        if not self.has_val or val < loop["best_val_loss"] * (1 - cfg.min_delta):
            loop["best_val_loss"], loop["best_step"], loop["bad"] = val, loop["step"], 0
            self.best = self.trainable()
            return False
        loop["bad"] += 1
        if loop["bad"] >= cfg.patience:
            gain = f"gain of {cfg.min_delta:.2%} or more" if cfg.min_delta else "gain"
            self.say(f"early stop: no validation {gain} for {cfg.patience} evaluations")
            loop["notes"].append(f"early stop at step {loop['step']}: no validation {gain} for {cfg.patience} "
                                 "evaluations")
            return True
        return False

    # --- checkpointing -----------------------------------------------------------------------------------------
    def fit_info(self) -> dict:
        loop, cfg = self.loop, self.cfg
        info = {"num_processes": self.nproc, "steps": loop["step"], "best_step": loop["best_step"],
                "best_val_loss": loop["best_val_loss"], "naive_val_loss": self.task.naive_val,
                "train_seconds": loop["train_seconds"], "train_tokens_seen": loop["tokens"],
                "train_targets_seen": loop["targets"], "history": loop["history"], "notes": sorted(set(loop["notes"])),
                "eval_every": cfg.eval_every, "lr_scheduler": cfg.lr_scheduler, "min_delta": cfg.min_delta,
                "epochs_run": round(loop["epoch"] + loop["batch"] / max(len(self.loader), 1), 3),
                "stop_reason": loop.get("stop_reason"), "stopped_because": stop_words(loop.get("stop_reason"))}
        if self.resume:
            info["resumed_state"] = True
        return info

    def save_point(self) -> Path | None:
        """Write the best checkpoint into save_dir, then the training state (both atomically)."""
        accelerator, main, save_dir, loop = self.accelerator, self.main, self.save_dir, self.loop
        if save_dir is None:
            return None
        if main and self.task.save_checkpoint is not None:
            with swapped(accelerator.unwrap_model(self.model), self.best):
                self.task.save_checkpoint(self.fit_info())
        root = save_dir / STATE_DIR
        if self.fresh_state and main:
            shutil.rmtree(root, ignore_errors=True)
        self.fresh_state = False
        final, tmp = root / f"step-{loop['step']:08d}", root / f".tmp-step-{loop['step']:08d}"
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        accelerator.wait_for_everyone()
        try:
            accelerator.save_state(str(tmp))  # every rank: each writes its own RNG state
            if main:
                from safetensors.torch import save_file

                save_file({k: v.contiguous().cpu() for k, v in self.best.items()}, str(tmp / BEST_FILE))
                (tmp / LOOP_FILE).write_text(json.dumps({"loop": loop, "fingerprint": self.task.fingerprint},
                                                        indent=1, default=str) + "\n")
                usual_modes(tmp)
        except Exception as exc:  # noqa: BLE001 - torch and safetensors wrap a full disk in their own errors
            reason = write_failure(exc)
            if reason is None:
                raise
            shutil.rmtree(tmp, ignore_errors=True)
            raise StockLLMError(f"cannot save the training state in {root} ({reason}): free some space, or pass "
                                "--save_every 0 to train without saved states") from None
        accelerator.wait_for_everyone()
        if main:
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in state_dirs(save_dir)[:-KEEP_STATES]:
                shutil.rmtree(old, ignore_errors=True)
        accelerator.wait_for_everyone()
        return final

    # --- the loop ----------------------------------------------------------------------------------------------
    def loop_over_epochs(self) -> dict:
        """Train until the epochs, the steps, the time budget or early stopping end it (or a signal interrupts
        it); leave the best weights in the module and return the fit record."""
        loop, cfg, accelerator = self.loop, self.cfg, self.accelerator
        self.model.train()
        self.bar = progress_bar(total=self.total, initial=loop["step"], desc=self.label, unit="step",
                                enabled=self.progress and accelerator.is_local_main_process)
        stop = loop["step"] >= self.total or loop.get("stopped", False)
        with _interrupts() as signals:
            self.t0 = time.perf_counter() - loop["train_seconds"]
            while not stop and loop["epoch"] < cfg.epochs:
                self.loader.set_epoch(loop["epoch"])
                epoch_loader = accelerator.skip_first_batches(self.loader, loop["batch"]) if loop["batch"] \
                    else self.loader
                if loop["batch"]:
                    epoch_loader.set_epoch(loop["epoch"])
                for batch in epoch_loader:
                    if not self.step(batch):
                        continue
                    stop, end_of_epoch = self.after_step(signals)
                    if stop or end_of_epoch:
                        break
                else:
                    # The loader ran out without a sync step (cannot happen with accelerate's end-of-loader sync).
                    loop["epoch"], loop["batch"] = loop["epoch"] + 1, 0
        return self.finish()

    def step(self, batch) -> bool:
        """One batch forward and backward (an optimizer step when the gradients sync); True after an optimizer
        step."""
        accelerator, loop, cfg = self.accelerator, self.loop, self.cfg
        with accelerator.accumulate(self.model):
            loss = self.task.loss(self.model, batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients and cfg.max_grad_norm:
                accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad()
        tokens, targets_ = self.task.count(batch)
        loop["tokens"], loop["targets"], loop["batch"] = loop["tokens"] + tokens, loop["targets"] + targets_, \
            loop["batch"] + 1
        loop["running"], loop["n_batches"] = loop["running"] + loss.item(), loop["n_batches"] + 1
        if not accelerator.sync_gradients:
            return False
        loop["step"] += 1
        self.bar.update(1)
        # refresh=False: shown at the bar's next timed redraw; a forced redraw each step would write a line per
        # step into a log (thousands for the MLP).
        self.bar.set_postfix(epoch=loop["epoch"] + 1, loss=f"{loop['running'] / loop['n_batches']:.4f}",
                             refresh=False)
        loop["train_seconds"] = time.perf_counter() - self.t0
        return True

    def after_step(self, signals: list) -> tuple[bool, bool]:
        """After an optimizer step: the budget, the validation and its stop decision, the save; (stop, end of
        epoch). Raises TrainingInterrupted on a signal (after saving the state)."""
        loop, cfg, accelerator = self.loop, self.cfg, self.accelerator
        end_of_epoch = loop["batch"] >= len(self.loader)
        if end_of_epoch:
            loop["epoch"], loop["batch"] = loop["epoch"] + 1, 0
        over, interrupted = _agree(None if self.alone else accelerator, cfg.max_train_seconds and
                                   loop["train_seconds"] >= cfg.max_train_seconds, bool(signals))
        if over:
            loop["notes"].append(f"stopped at the --max_train_seconds {cfg.max_train_seconds:g} budget "
                                 f"after {loop['step']} steps ({loop['step'] / self.steps_per_epoch:.2f} epochs)")
        last = loop["step"] >= self.total or over
        # Steps into this epoch (an epoch always has steps_per_epoch of them): every epoch validates on the same
        # steps, and its end is one of them.
        in_epoch = loop["step"] - (loop["epoch"] - end_of_epoch) * self.steps_per_epoch
        validation = last or end_of_epoch or bool(cfg.eval_every and in_epoch % cfg.eval_every == 0)
        stop = False
        if validation:
            t_eval = time.perf_counter()
            # One stop decision for all ranks, through the same agreement as the budget and signals.
            patience_ended, = _agree(None if self.alone else accelerator,
                                     self.validation(loop["running"] / loop["n_batches"]))
            stop = patience_ended or last
            if stop:
                loop["stop_reason"] = ("patience" if patience_ended else "max_train_seconds" if over
                                       else "max_steps" if self.capped else "epochs")
                if loop["stop_reason"] == "max_steps":
                    loop["notes"].append(f"stopped after --max_steps {cfg.max_steps} "
                                         f"({cfg.max_steps / self.steps_per_epoch:.2f} epochs)")
            loop["running"], loop["n_batches"] = 0.0, 0
            self.t0 += time.perf_counter() - t_eval  # the budget and throughput count training only
        if stop:
            loop["stopped"] = True
        if stop or interrupted or (validation and cfg.save_every and loop["validations"] % cfg.save_every == 0):
            t_save = time.perf_counter()
            where = self.save_point()
            self.t0 += time.perf_counter() - t_save
            if interrupted and not stop:
                self.bar.close()
                raise TrainingInterrupted(signals[0], where, step=loop["step"])
        return stop, end_of_epoch

    def finish(self) -> dict:
        """The best weights back into the module; the fit record."""
        loop = self.loop
        if loop["stop_reason"] is None:  # the epochs ran out (or a resumed run had nothing left to do)
            loop["stop_reason"] = "epochs"
        self.bar.close()
        self.module.load_state_dict(self.best, strict=False)
        if self.accelerator.device.type != "cpu":
            # Hands cached device memory back; its gc.collect() costs ~0.3 s, which a CPU fit of the MLP (run again
            # and again under evaluate --refit_every) need not pay: the accelerator's references die with it here.
            self.accelerator.free_memory()
        if loop["best_step"] == 0 and self.has_val:
            self.say("note: no step beat the untrained model on validation, so the checkpoint predicts as its "
                     "head's base (FHS, or the naive walk with --head_base gaussian)")
        return self.fit_info()


STOP_REASONS = {
    "patience": "early stopping: no validation gain (of at least --min_delta) for --patience evaluations in a row",
    "max_steps": "the --max_steps budget was reached",
    "max_train_seconds": "the --max_train_seconds budget was reached",
    "epochs": "every --epochs pass was done",
}


def stop_words(reason: str | None) -> str:
    """Why training stopped, in words, for a ``stop_reason`` of the fit record (patience, max_steps,
    max_train_seconds, epochs)."""
    return STOP_REASONS.get(reason, "unknown") if reason else "unknown"


def _agree(accelerator, *flags: bool) -> list[bool]:
    """Flags agreed by all ranks (any rank's True wins): a rank that stopped alone would leave the others
    waiting in the gradient all-reduce, and each rank's clock and signals differ. ``accelerator`` None: this
    process's own flags (it trains alone)."""
    if accelerator is None or accelerator.num_processes == 1:
        return [bool(f) for f in flags]
    t = torch.tensor([float(bool(f)) for f in flags], device=accelerator.device)
    return [bool(v > 0) for v in accelerator.reduce(t, reduction="max").tolist()]


@contextmanager
def swapped(module: nn.Module, weights: dict[str, torch.Tensor]):
    """Run a block with ``weights`` loaded into ``module`` (by parameter name), then put the current ones back."""
    current = {n: p.detach().clone() for n, p in module.named_parameters() if n in weights}
    module.load_state_dict(weights, strict=False)
    try:
        yield module
    finally:
        module.load_state_dict(current, strict=False)


def check_fingerprint(saved: dict, now: dict, where: Path) -> None:
    """Refuse to resume a state with settings or data that differ from this run's, naming the first one."""
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            raise StockLLMError(f"cannot resume the training state in {where}: {key} was {a!r} and is now {b!r}; "
                                "resume with the same flags and data as the interrupted run, or start afresh "
                                "without --resume")
