"""The `digitscan` command line: thin click commands over the library; only this module prints.

Run `digitscan --help` or `digitscan COMMAND --help`. Heavy imports (torch) happen inside commands, so start-up stays
fast.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from types import SimpleNamespace

import click

from digitscan.constants import PAGE_TIME_LIMIT_S, PAPER_RESULTS, READ_METHODS, READ_TIME_LIMIT_S
from digitscan.errors import CheckpointError, DatasetError, ImageError, ModelOutputError, one_line
from digitscan.fields.formats import DATE_ORDERS, VALUE_FORMATS, FieldSpec
from digitscan.files import atomic_write, expand_paths
from digitscan.json_output import strict_json

TRAINING_PACKAGES = ("torch", "onnxscript")  # the [train] extra: training, export, PyTorch inference


class UserError(click.ClickException):
    """A problem the user can fix: printed as one line, exit status 1."""

    exit_code = 1

    def show(self, file=None) -> None:
        click.echo(f"digitscan: error: {self.message}", err=True)


class UsageLine(click.UsageError):
    """A usage error in a file the command line names (a form template): one line like UserError, exit status 2."""

    def show(self, file=None) -> None:
        click.echo(f"digitscan: error: {self.message}", err=True)


class Group(click.Group):
    """Turns library errors (bad data, model or image files) into one clear line instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("digitscan: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            if isinstance(exc, ImportError) and exc.name in TRAINING_PACKAGES:
                raise UserError(f"this needs {exc.name}, which only digitscan's training extra installs: "
                                f"pip install 'digitscan[train]' (predict, read and serve run without it)") from None
            if is_user_error(exc):
                raise UserError(str(exc)) from None
            raise UserError(f"{type(exc).__name__}: {exc} (rerun with --debug for the traceback)") from None


def is_user_error(exc: Exception) -> bool:
    return isinstance(exc, (DatasetError, CheckpointError, ImageError, ValueError, OSError))


def emit(record: dict) -> None:
    click.echo(strict_json(record))


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="digitscan")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """Recognize handwritten digits in photos, scans and drawings.

    \b
    Quick start:
      digitscan predict photo.jpg          one digit per image (folders are searched)
      digitscan train --arch paper         reproduce the paper's CNN on MNIST
      digitscan evaluate                   test accuracy and confusion matrix of the shipped model
      digitscan compare                    the paper's SVM / ANN / CNN comparison

    MNIST is read from --data DIR or $DIGITSCAN_DATA, else from a per-user cache filled by `digitscan data fetch`.
    """
    ctx.obj = {"debug": debug}


model_option = click.option("--model", "-m", "model", type=click.Path(dir_okay=False),
                            help="A checkpoint (.safetensors); default: the shipped model.")
recognizer_model_option = click.option("--model", "-m", "model", type=click.Path(dir_okay=False),
                                       help="A checkpoint (.safetensors) or an exported model (.onnx); "
                                            "default: the shipped model.")
json_option = click.option("--json", "as_json", is_flag=True, help="One JSON object per line (see INTERFACE.md).")
ensemble_option = click.option("--ensemble", is_flag=True,
                               help="Average the shipped ensemble: several seeds of the shipped recipe, each over "
                                    "one-pixel shifts of the input. A little more accurate, ~25x the compute.")
data_option = click.option("--data", type=click.Path(file_okay=False),
                           help="Folder with the MNIST IDX files (default: $DIGITSCAN_DATA, then the cache).")
dataset_option = click.option("--dataset", default="mnist", show_default=True,
                              help="mnist, fashion-mnist, idx:DIR (IDX files named like MNIST's) or folder:DIR "
                                   "(one subfolder of images per class); see docs/training.md.")
backend_option = click.option(
    "--backend", type=click.Choice(["torch", "onnx"]), default=None,
    help="onnx: onnxruntime, no PyTorch (the default for the shipped models and any --model FILE.onnx from "
         "`digitscan export`); torch: PyTorch (the default for a --model checkpoint, .safetensors; needs "
         "`pip install 'digitscan[train]'`). onnx with a checkpoint exports it in memory at start-up (a few "
         "seconds, parity-checked, nothing written): export once and pass --model FILE.onnx to skip that.")


def batch_options(command):
    """--out and the options of a batch job (digitscan.batch), shared by predict and read."""
    options = [
        click.option("--out", "-o", type=click.Path(dir_okay=False),
                     help="Batch job: write one CSV row per file to OUT instead of printing (see above)."),
        click.option("--resume", is_flag=True,
                     help="Continue OUT: skip the files already in it (same PATHS as before), then append."),
        click.option("--force", is_flag=True,
                     help="Overwrite an existing OUT (without it, an existing OUT is refused)."),
        click.option("--workers", type=click.IntRange(min=0),
                     help="Processes decoding images (default: one per CPU; 0: decode in this process). With "
                          "--engine ray: decoding tasks at once on the local Ray instance (at least 1)."),
        click.option("--batch-size", type=click.IntRange(min=1),
                     help="Images per inference call and rows per flush to OUT (default: 256)."),
        click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
        click.option("--engine", type=click.Choice(["local", "ray"]),
                     help="local (default): worker processes on this machine; ray: a Ray Data pipeline on a local "
                          "Ray instance (one CPU per --workers plus one for the model) or on the cluster at "
                          "--address. Needs pip install 'digitscan[ray]'. Same rows, order and --resume."),
        click.option("--address", metavar="ADDR",
                     help="With --engine ray: the Ray cluster to run on (HEAD:6379, ray://HEAD:10001, auto); its "
                          "nodes must see PATHS at the same absolute paths. Default: a local instance, stopped "
                          "after the job."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


BATCH_ONLY = {"resume": "--resume", "force": "--force", "workers": "--workers", "batch_size": "--batch-size",
              "no_progress": "--no-progress", "probabilities": "--probabilities", "engine": "--engine",
              "address": "--address"}
RAY_MISSING = "--engine ray needs Ray, which is not installed: pip install 'digitscan[ray]'"


def check_batch_options(out: str | None, as_json: bool, **batch: object) -> None:
    """Usage errors (exit 2) for batch-job options that make no sense together."""
    if out is None:
        for name, value in batch.items():
            if value not in (None, False):
                raise click.UsageError(f"{BATCH_ONLY[name]} only applies to a batch job (--out FILE)")
        return
    if as_json:
        raise click.UsageError("--json prints JSON lines; --out writes a CSV file: choose one")
    if batch.get("resume") and batch.get("force"):
        raise click.UsageError("--resume continues OUT, --force overwrites it: choose one")
    if batch.get("engine") != "ray":
        if batch.get("address") is not None:
            raise click.UsageError("--address only applies to --engine ray")
        return
    if batch.get("workers") == 0:
        raise click.UsageError("--engine ray decodes in Ray tasks: --workers must be at least 1")
    if batch.get("workers") is not None and batch.get("address") is not None:
        raise click.UsageError("--workers sizes a local Ray instance; a cluster at --address brings its own CPUs")
    ray_engine()  # a missing extra is said before the model loads


def ray_engine():
    """digitscan.ray_batch, or a usage error (exit 2) when Ray is not installed."""
    try:
        from digitscan import ray_batch
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] != "ray":
            raise
        raise click.UsageError(RAY_MISSING) from None
    return ray_batch


def batch_model_threads(out: str | None, workers: int | None) -> int | None:
    """One model thread when worker processes decode: the model is a small share of a batch job's work, and idle
    intra-op threads spin-wait on the cores the decoders need. Else the runtime's default."""
    return 1 if out is not None and workers != 0 else None


def run_batch(make_job, recognizer, load_options: dict, paths: tuple[str, ...], out: str, *, resume: bool,
              force: bool, workers: int | None, batch_size: int | None, no_progress: bool, engine: str | None,
              address: str | None) -> None:
    """Run a batch job for predict/read --out and report it; exit status 1 if any row of OUT holds an error.

    make_job(recognizer) is the job (digitscan.batch); with --engine ray every actor rebuilds it from load_options,
    Recognizer.load's arguments, instead of receiving this process's model."""
    from tqdm import tqdm

    from digitscan.batch import DEFAULT_BATCH, run_job

    def report_error(path: str, message: str) -> None:
        tqdm.write(f"digitscan: {path}: {message}", file=sys.stderr)

    files = expand_paths(paths)
    common = {"resume": resume, "overwrite": force, "batch_size": batch_size or DEFAULT_BATCH,
              "progress": not no_progress, "on_error": report_error}
    try:
        if engine == "ray":
            ray_batch = ray_engine()
            summary = ray_batch.run_ray_job(ray_batch.RayJob(load_options, make_job), files, out, address=address,
                                            workers=workers, recognizer=recognizer, **common)
        else:
            summary = run_job(make_job(recognizer), files, out, workers=workers, **common)
    except FileExistsError as exc:
        raise click.UsageError(str(exc)) from None
    except KeyboardInterrupt:
        click.echo(f"digitscan: interrupted; the rows written so far are in {out}: rerun with --resume to finish",
                   err=True)
        sys.exit(130)
    repaired = "; cut off a torn last line left by a crash" if summary.repaired else ""
    click.echo(f"{summary.out}: {summary.total} files, {summary.written} rows written "
               f"({summary.files_per_s:,.0f} files/s), {summary.skipped} already done, "
               f"{summary.failed} with errors{repaired}")
    if summary.failed:
        sys.exit(1)


BATCH_HELP = """
    \b
    Batch jobs (--out FILE): for folders of thousands of files. Images are decoded in worker processes, run
    through the model in batches, and each batch's rows are appended to the CSV and flushed at once, so a crash or
    Ctrl-C loses at most the batch in flight. --resume skips the files already in FILE and completes it (a last
    line torn by a crash is cut off and redone). An existing FILE is refused unless --resume or --force is given.
    Files are processed in a stable order (arguments in order, folders sorted). A file that cannot be read is a
    row with `error` set; the job goes on, and exits with status 1 at the end.

    \b
    Past one machine (--engine ray, pip install 'digitscan[ray]'): Ray tasks decode, a pool of actors (each
    loading the model once) infers, and the rows reach OUT in the same order, resumable the same way:
      ... --out results.csv --engine ray --workers 4              a local Ray instance, stopped after the job
      ... --out results.csv --engine ray --address HEAD:6379      a cluster (`ray start --head` on HEAD); its nodes
                                                                  must see PATHS at the same absolute paths
"""


@main.command()
@click.argument("paths", nargs=-1, required=True)
@recognizer_model_option
@click.option("--preprocess", "mode", type=click.Choice(["robust", "paper"]), default=None,
              help="robust (default): find the ink, crop, centre like MNIST; "
                   "paper: grayscale + resize, as in the paper.")
@json_option
@ensemble_option
@backend_option
@batch_options
@click.option("--probabilities", is_flag=True, help="With --out: also a p_<class> column per class.")
def predict(paths: tuple[str, ...], model: str | None, mode: str | None, as_json: bool, ensemble: bool,
            backend: str | None, out: str | None, probabilities: bool, **batch) -> None:
    """Recognize one digit per image.

    PATHS are image files (PNG, JPEG, BMP, GIF, TIFF, WebP) or folders, searched recursively.
    An image that is not a digit (blank, noise, a picture of something else) is reported as such.
    Files that cannot be read are reported one line each; the others are still processed (exit status 1).

    \b
    CSV columns with --out: path, digit ("" when not a digit), confidence, is_digit (true/false),
    [p_0 ... p_9 with --probabilities,] error ("" when the file was read).

    \b
    Examples:
      digitscan predict examples/
      digitscan predict --json scan.png | jq .digit
      digitscan predict scans/ --out results.csv            a batch job; Ctrl-C, then add --resume to finish
      digitscan export --out digits.onnx && digitscan predict --model digits.onnx scans/
    """
    from digitscan.recognize import Recognizer

    check_batch_options(out, as_json, probabilities=probabilities, **batch)

    def describe(result) -> str:
        if result.is_digit:
            return f"The Number is {result.label} (confidence {result.confidence:.3f})"
        if result.label is not None:  # a model of other classes (e.g. trained with --dataset fashion-mnist)
            return f"{result.label} (confidence {result.confidence:.3f})"
        return f"not a digit (confidence {result.confidence:.3f})"

    load_options = {"path": model, "preprocess": mode, "ensemble": ensemble, "backend": backend,
                    "threads": batch_model_threads(out, batch["workers"])}
    recognizer = Recognizer.load(**load_options)
    if out is not None:
        from digitscan.batch import predict_job

        run_batch(functools.partial(predict_job, probabilities=probabilities), recognizer, load_options, paths, out,
                  **batch)
        return
    process_files(expand_paths(paths), recognizer.predict, describe, as_json)


predict.help += BATCH_HELP


def process_files(files: list[Path], work, describe, as_json: bool, record=None) -> None:
    """Run work(path) on each file and print its result; a file that fails is one line (and a JSON error row),
    the others are still processed, and the exit status is 1 if any failed.

    record(result): its JSON object without "path" (default: result.to_dict()). A record holding an "error" (a
    reading that is not the format asked for) is printed whole and counts as failed too. describe(result): the
    human line, or a list of lines, each printed after the path.
    Bad input (ImageError) and file-system trouble (OSError, e.g. writing a debug image) are the file's problem;
    anything else is a bug met on this input: it is reported the same way, or raised with --debug.
    """
    context = click.get_current_context(silent=True)
    debug = bool(context and context.obj and context.obj.get("debug"))
    record = record or (lambda result: result.to_dict())
    failures = 0
    for path in files:
        try:
            result = work(path)
            data = record(result)
            line = strict_json({"path": str(path), **data}) if as_json else None
        except (ImageError, OSError, ModelOutputError) as exc:
            problem = one_line(exc)
        except Exception as exc:
            if debug:
                raise
            problem = f"{type(exc).__name__}: {one_line(exc)} (rerun with --debug for the traceback)"
        else:
            if as_json:
                click.echo(line)
            else:
                lines = describe(result)
                for text in [lines] if isinstance(lines, str) else lines:
                    click.echo(f"{path}: {text}")
            if data.get("error"):
                failures += 1
                click.echo(f"digitscan: {path}: {data['error']}", err=True)
            continue
        failures += 1
        if as_json:
            emit({"path": str(path), "error": problem})
        click.echo(f"digitscan: {path}: {problem}", err=True)
    if failures:
        sys.exit(1)


@main.command()
@click.option("--arch", default="paper", show_default=True,
              help="Architecture: paper, easy, mlp, dsnet, or 'shipped' (the shipped model's recipe).")
@click.option("--epochs", type=int, help="Epochs (default: the architecture's recipe; paper: 5).")
@click.option("--batch-size", type=int, help="Batch size (paper: 32).")
@click.option("--lr", type=float, help="Peak learning rate (paper: Adam 1e-3).")
@click.option("--val-split", type=float,
              help="Fraction of the 60,000 training images held out for validation (paper: 0.3).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed for the split, initialization and shuffling.")
@click.option("--threads", type=int, help="CPU threads for PyTorch (default: PyTorch's choice).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@dataset_option
@click.option("--data", type=click.Path(file_okay=False),
              help="Folder of mnist's or fashion-mnist's IDX files (default: $DIGITSCAN_DATA or the cache for mnist; "
                   "$DIGITSCAN_FASHION_DATA or /usr/share/datasets/fashion-mnist for fashion-mnist).")
@click.option("--preprocess", type=click.Choice(["robust", "paper"]),
              help="How folder: images become 28x28 inputs; recorded for predict. robust: ink on paper centred like "
                   "MNIST (default); paper: grayscale + resize (default for fashion-mnist).")
@click.option("--augment", type=click.Choice(["none", "handwriting"]),
              help="Augmentation (default: the recipe's on mnist, none on other datasets).")
@click.option("--init", type=click.Path(dir_okay=False),
              help="Start from this checkpoint's weights ('shipped': the shipped model): fine-tuning. Same --arch "
                   "and number of classes required.")
@click.option("--out", type=click.Path(dir_okay=False), help="Checkpoint path (default: runs/ARCH.safetensors).")
@json_option
@click.option("--eval-test", is_flag=True,
              help="Also report test accuracy after each epoch (for benchmarks; never used to pick the checkpoint).")
@click.option("--limit", type=int, help="Train on only the first N images of the training split (quick trials).")
@click.option("--realworld", is_flag=True,
              help="Also train on photographed digits and on non-digits (Fashion-MNIST training pictures, letters, "
                   "scribbles, wrong cuts of numbers), on scanned and tight-cropped digits and on real scans by "
                   "other people (the realdev train split), then choose the not-a-digit threshold on validation "
                   "data. Needs the Debian packages dataset-fashion-mnist and the handwriting fonts, and the realdev "
                   "folder (docs/real-world.md, docs/model-card.md).")
@click.option("--realdev", type=click.Path(file_okay=False),
              help="The realdev folder --realworld reads (default: $DIGITSCAN_REALDEV, else ../shared/data/realdev "
                   "beside the repository).")
@click.option("--real-weight", type=click.FloatRange(min=0, min_open=True),
              help="--realworld: how many times as often each realdev digit is drawn as a synthetic one "
                   "(default 3).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--distributed", is_flag=True,
              help="Data-parallel on this machine: rerun this command under torchrun --standalone with "
                   "--nproc-per-node processes. (Started by torchrun yourself, training is data-parallel anyway.)")
@click.option("--nproc-per-node", type=click.IntRange(min=1),
              help="Processes for --distributed (default: one per GPU, else 2).")
@click.pass_context
def train(ctx, arch, epochs, batch_size, lr, val_split, seed, threads, device, dataset, data, preprocess, augment,
          init, out, as_json, eval_test, limit, realworld, realdev, real_weight, no_progress, distributed,
          nproc_per_node):
    """Train a model on MNIST or another dataset and save a self-describing checkpoint.

    Each architecture brings its own recipe (epochs, batch size, optimizer, schedule, augmentation);
    flags override single settings. The checkpoint (safetensors + metadata) keeps the epoch with the best
    validation accuracy (a --realworld run: the last) and the dataset's class names; a training-curves PNG is
    written beside it.

    Under torchrun (several processes, one or more machines) training is data-parallel with
    DistributedDataParallel: --batch-size is per process; only rank 0 prints and saves. See docs/training.md.

    \b
    Examples:
      digitscan train --arch paper                 the paper: Adam, 5 epochs, batch 32, validation split 0.3
      digitscan train --arch shipped --json        rerun the recipe of the shipped weights (first stage)
      digitscan train --arch shipped --init runs/dsnet-l.safetensors --realworld --epochs 8 --lr 0.002 --real-weight 8
                                                   its second stage: fine-tuning for photos, scans and non-digits
      digitscan train --arch dsnet --dataset fashion-mnist
      digitscan train --arch dsnet --dataset folder:my_symbols --out runs/symbols.safetensors
      digitscan train --arch shipped --init shipped --epochs 3 --lr 0.002     fine-tune the shipped model
      torchrun --standalone --nproc_per_node=2 -m digitscan train --arch dsnet
    """
    from digitscan.plots import save_training_curves
    from digitscan.training import distributed as dist
    from digitscan.training.classifier import make_config, pick_device
    from digitscan.training.classifier import train as run_training

    config = make_config(arch, epochs=epochs, batch_size=batch_size, lr=lr, val_split=val_split, seed=seed,
                         threads=threads, device=device, eval_test=eval_test, dataset=dataset, data=data,
                         preprocess=preprocess, augment=augment, init=init, limit=limit, realworld=realworld or None,
                         realdev=realdev, real_weight=real_weight)
    if distributed and not dist.launched_by_torchrun():
        sys.exit(launch_torchrun(ctx, nproc_per_node, cuda=pick_device(config.device).type == "cuda"))
    out_path = Path(out or f"runs/{config.arch}.safetensors")

    def report(record: dict) -> None:
        if as_json:
            emit(record)
            return
        val = f"val_loss {record['val_loss']:.4f}  val_accuracy {record['val_accuracy']:.4f}  " \
            if record["val_loss"] is not None else ""
        test = f"test_accuracy {record['test_accuracy']:.4f}  " if "test_accuracy" in record else ""
        click.echo(f"epoch {record['epoch']:>2}/{config.epochs}  loss {record['train_loss']:.4f}  "
                   f"accuracy {record['train_accuracy']:.4f}  {val}{test}{record['elapsed_s']:.1f}s")

    with dist.process_group(pick_device(config.device)):  # under torchrun: join the job, leave after the last rank
        result = run_training(config, out_path, progress=not no_progress, on_epoch=report)
    if result.checkpoint is None:  # not rank 0 of a data-parallel run
        return
    curves = save_training_curves(result.history, out_path.with_suffix(".curves.png"),
                                  title=f"{config.arch} on {config.dataset}: training curves")
    if not as_json:
        kept = "the last, as for every --realworld run" if result.config.realworld else "by validation accuracy"
        click.echo(f"saved {result.checkpoint} (epoch {result.best_epoch}, {kept}) and {curves}")


@main.command("choose-threshold")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", type=click.Path(dir_okay=False), required=True,
              help="Where to write the checkpoint with its new rule (the same path replaces it, atomically).")
@click.option("--realdev", type=click.Path(file_okay=False),
              help="The realdev folder (default: $DIGITSCAN_REALDEV, else ../shared/data/realdev).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def choose_threshold(checkpoint: str, out: str, realdev: str | None, no_progress: bool) -> None:
    """Choose the not-a-digit rule of a --realworld checkpoint again, on validation data.

    The weights and the temperature stay; the thresholds (on the top logit, and on the calibrated top probability
    for ensembles) are chosen as `train --realworld` chooses them at the end of its run: on photos and scans made
    from the run's own MNIST validation split, non-digits, and the realdev validation writers. Use it after the rule
    or the validation data changed, without training again. Prints what the new rule accepts, per source.

    \b
    Example:
      digitscan choose-threshold runs/tuned.safetensors --out runs/tuned.safetensors
    """
    from digitscan.training.classifier import rechoose_reject_rule

    fields = rechoose_reject_rule(checkpoint, out, realdev=realdev, progress=not no_progress)
    validation = fields["reject_rule"]["validation"]
    by_probability = fields["reject_rule"]["validation_probability"]
    click.echo(f"{out}: top logit >= {fields['reject_logit_threshold']:.4f} (probability rule, for ensembles: "
               f"{fields['reject_threshold']:.4f})")
    click.echo(f"  all validation digits / non-digits accepted: {validation['digits_accepted']:.3f} / "
               f"{validation['nondigits_accepted']:.3f} (the probability rule: {by_probability['digits_accepted']:.3f}"
               f" / {by_probability['nondigits_accepted']:.3f})")
    for kind in ("digits", "nondigits"):
        for source, row in validation[f"{kind}_by_source"].items():
            click.echo(f"  {'digits' if kind == 'digits' else 'not digits'}, {source}: {row['accepted']:.3f} "
                       f"accepted of {row['n']}")


@main.command("train-reader")
@click.option("--lines", type=click.IntRange(min=1), default=60_000, show_default=True,
              help="Photographed numbers and fields to train on, made from MNIST training digits (~40 per second "
                   "on 2 cores; cached).")
@click.option("--val-lines", type=click.IntRange(min=1), default=1_000, show_default=True,
              help="Photographed numbers made from the validation digits, read after every epoch.")
@click.option("--epochs", type=click.IntRange(min=1), default=6, show_default=True)
@click.option("--lr", type=float, default=0.003, show_default=True, help="Peak learning rate (AdamW, one-cycle).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the lines, initialization and order.")
@click.option("--init", default="shipped-reader", show_default=True, metavar="FILE",
              help="What the reader starts from: 'shipped-reader' (the shipped line reader, every layer; new "
                   "classes start fresh), another line reader checkpoint, a dsnet checkpoint (the digit "
                   "classifier's convolutional trunk; the shipped digit model is dsnet-l, whose is not), or 'none' "
                   "(from scratch).")
@click.option("--workers", type=click.IntRange(min=1), help="Processes making the lines (default: one per core).")
@click.option("--out", type=click.Path(dir_okay=False), default="runs/reader.safetensors", show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def train_reader_command(lines, val_lines, epochs, lr, seed, init, workers, out, no_progress) -> None:
    """Train the line reader that `digitscan read` uses: one network reads a whole photographed number (CTC).

    Half the lines are numbers of 1-12 MNIST training digits (spaced, touching, on a ruled line, on a wandering
    baseline), half are amounts, dates and IDs with pen-stroke separators and marks, a third of those on a
    cheque's printed background; all are photographed with every nuisance of the real-world benchmark and cut
    to the strip the reader sees;
    every epoch stretches and slants each strip anew. After every epoch it reads numbers made from the validation
    digits. See docs/reading-numbers.md.

    \b
    Examples:
      digitscan train-reader                                the shipped recipe (~25 min of lines, ~15 of training)
      digitscan train-reader --lines 2000 --epochs 2 --out runs/try.safetensors
      digitscan read --reader runs/reader.safetensors zip_code.jpg
    """
    from digitscan.plots import save_training_curves
    from digitscan.training.line_reader import ReaderConfig, train_reader

    config = ReaderConfig(lines=lines, val_lines=val_lines, epochs=epochs, lr=lr, seed=seed,
                          init=None if init == "none" else init)
    _, meta = train_reader(config, out, workers=workers, progress=not no_progress)
    curves = save_training_curves(meta["history"], Path(out).with_suffix(".curves.png"),
                                  title="line reader: CTC loss and validation lines read exactly")
    click.echo(f"saved {out} ({meta['metrics']['val_lines_exact']:.2%} of {meta['metrics']['val_lines']} "
               f"validation lines read exactly) and {curves}")


def launch_torchrun(ctx: click.Context, nproc_per_node: int | None, cuda: bool) -> int:
    """Run the current command again as `python -m torch.distributed.run --standalone ... -m digitscan train OPTIONS`
    (torchrun on this machine); returns its exit status."""
    import subprocess

    import torch

    nproc = nproc_per_node or (torch.cuda.device_count() if cuda else 2)
    options = []
    for param in ctx.command.params:  # the options as given, except the ones that asked for this launch
        value = ctx.params[param.name]
        if (param.name in ("distributed", "nproc_per_node") or value is None or value is False
                or value == param.get_default(ctx)):
            continue
        options += [param.opts[0]] if param.is_flag else [param.opts[0], str(value)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               "-m", "digitscan", "train", *options]
    click.echo("running: python " + " ".join(command[1:]), err=True)
    return subprocess.run(command, check=False).returncode


@main.command()
@model_option
@dataset_option
@click.option("--data", type=click.Path(file_okay=False),
              help="Folder of mnist's or fashion-mnist's IDX files (default: as for `digitscan train`).")
@json_option
@click.option("--out", type=click.Path(file_okay=False), default="out/evaluate", show_default=True,
              help="Folder for the confusion-matrix and misclassified-images PNGs.")
@ensemble_option
def evaluate(model: str | None, dataset: str, data: str | None, as_json: bool, out: str, ensemble: bool) -> None:
    """Test a model on the test split of a dataset (default: the 10,000 MNIST test images).

    Prints loss, accuracy, per-class precision/recall/F1 and the confusion matrix, and writes
    confusion_matrix.png and misclassified.png into --out. The model's classes must be the dataset's.

    \b
    Examples:
      digitscan evaluate                                         the shipped model on MNIST
      digitscan evaluate --model runs/dsnet.safetensors --dataset fashion-mnist
    """
    from digitscan.data.datasets import load_dataset
    from digitscan.models.checkpoint import load_checkpoint, load_ensemble
    from digitscan.models.inference import infer
    from digitscan.plots import save_confusion_matrix, save_misclassified_grid
    from digitscan.training.evaluate import metrics, misclassified

    checkpoint = load_ensemble() if ensemble else load_checkpoint(model)
    # A folder's images are decoded the way the model's training images were.
    test = load_dataset(dataset, ["test"], data=data, preprocess_mode=checkpoint.meta.get("preprocess"))
    if test.classes != checkpoint.classes:
        raise UserError(f"{checkpoint.path} recognizes {', '.join(checkpoint.classes)}; dataset {test.name} has "
                        f"classes {', '.join(test.classes)}")
    images, labels = test.test.images, test.test.labels
    logits = infer(checkpoint.model, images)
    result = metrics(logits, labels)
    wrong = misclassified(logits, labels)
    out_dir = Path(out)
    save_confusion_matrix(result["confusion_matrix"], out_dir / "confusion_matrix.png", classes=checkpoint.classes,
                          title=f"Confusion matrix — {checkpoint.meta['arch']} on {test.name} test")
    save_misclassified_grid(images[wrong["index"]], wrong["true"], wrong["pred"], out_dir / "misclassified.png",
                            confidences=wrong["confidence"], classes=checkpoint.classes)
    if as_json:
        emit(result)
        return
    click.echo(f"model     {checkpoint.path} ({checkpoint.meta['arch']})")
    click.echo(f"test      n={result['n']}  loss {result['loss']:.4f}  accuracy {result['accuracy']:.4f} "
               f"({result['n'] - len(wrong['index'])}/{result['n']} correct)")
    width = max(5, *map(len, checkpoint.classes))
    click.echo(f"{'class':>{width}}  precision  recall     f1  support")
    for row in result["per_class"]:
        click.echo(f"{checkpoint.classes[row['class']]:>{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                   f"{row['f1']:5.4f}  {row['support']:7d}")
    click.echo("confusion matrix (rows = true, columns = predicted):")
    for row in result["confusion_matrix"]:
        click.echo(" ".join(f"{v:5d}" for v in row))
    click.echo(f"plots     {out_dir / 'confusion_matrix.png'}, {out_dir / 'misclassified.png'}")


@main.command()
@click.option("--arch", default="paper", show_default=True, help="Architecture name, or 'shipped'.")
def summary(arch: str) -> None:
    """Print an architecture's layers with output shapes and parameter counts (like Keras's model.summary())."""
    from digitscan.models.architectures import build_model, count_parameters, layer_table, resolve_arch

    model = build_model(arch)
    rows = layer_table(model)
    click.echo(f"Model: {resolve_arch(arch)}")
    click.echo(f"{'Layer (type)':<28}{'Output Shape':<18}{'Param #':>10}")
    click.echo("=" * 56)
    for row in rows:
        shape = "×".join(str(s) for s in row["output_shape"])
        click.echo(f"{row['name'] + ' (' + row['type'] + ')':<28}{shape:<18}{row['params']:>10,}")
    click.echo("=" * 56)
    total = count_parameters(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    click.echo(f"Total params: {total:,}\nTrainable params: {trainable:,}\nNon-trainable params: {total - trainable:,}")


@main.command()
@data_option
@click.option("--seed", type=int, default=0, show_default=True)
@json_option
@click.option("--out", type=click.Path(file_okay=False), default="out/compare", show_default=True,
              help="Folder for the comparison bar chart.")
@click.option("--limit", type=int,
              help="Train on only N images per model (a quick trial; not comparable to the paper).")
def compare(data: str | None, seed: int, as_json: bool, out: str, limit: int | None) -> None:
    """Train and test SVM, ANN and CNN on the same split (the paper's Fig. 15).

    All three train on the same 42,000 images (validation split 0.3) and are tested on the 10,000 MNIST test
    images. SVM: RBF kernel on 50 PCA components; ANN: MLP 784-512-256-10, 15 epochs; CNN: the paper's model, 5 epochs.
    Takes a few minutes on 2 CPU cores.
    """
    from digitscan.plots import save_comparison_bars
    from digitscan.training.compare import compare as run_compare

    def progress(message: str) -> None:
        if not as_json:
            click.echo(message, err=True)

    results = run_compare(data=data, seed=seed, log=progress, progress=not as_json, limit=limit)
    chart = save_comparison_bars(results, Path(out) / "comparison.png", reference=PAPER_RESULTS)
    if as_json:
        emit({"results": results})
        return
    click.echo(f"{'model':<6}{'accuracy':>10}{'paper':>9}{'train s':>10}")
    for row in results:
        click.echo(f"{row['model']:<6}{row['accuracy']:>10.4f}{PAPER_RESULTS[row['model']]:>9.4f}"
                   f"{row['train_seconds']:>10.1f}")
    click.echo(f"chart {chart}")


@main.command()
@click.argument("paths", nargs=-1, required=True)
@recognizer_model_option
@json_option
@click.option("--debug-image", "debug_image", type=click.Path(),
              help="Also write the input with each digit's box and label drawn (each field's with --layout "
                   "page): a PNG file for one input, a folder (one PNG per input, named after it) for several.")
@click.option("--method", type=click.Choice(READ_METHODS),
              help="sequence: one network reads the whole line (the line reader); segments: cut the line into "
                   "digits and classify each with the digit model; both: the two, each digit's class from their "
                   "averaged probabilities (where they find as many digits). Default: sequence, or segments when "
                   "--model or --ensemble chooses a digit model (the line reader uses none); --layout page and "
                   "--template read every field with both.")
@click.option("--reader", type=click.Path(dir_okay=False),
              help="The line reader: a checkpoint from `digitscan train-reader` (PyTorch) or its `digitscan "
                   "export` (.onnx); default: the shipped one (onnxruntime).")
@ensemble_option
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Seconds allowed per image; a page of clutter that takes longer is reported as too complex "
                   "(default: 5; 30 with --layout page).")
@click.option("--layout", type=click.Choice(["line", "page"]), default="line", show_default=True,
              help="line: one number per image; page: every handwritten number on a form page (comb boxes, "
                   "underlined and boxed fields, free-standing numbers; printed text is left out), one field each.")
@click.option("--template", "template_path", metavar="FORM.json",
              help="Read the fields of a form: FORM.json names each field's box, kind (digits, amount, date, comb), "
                   "pattern and checksum (docs/templates.md). One line per field; '?' marks a field to review.")
@click.option("--format", "value_format", type=click.Choice(VALUE_FORMATS),
              help="Parse each number: amount (a decimal string, 1.250,00 -> 1250.00), date (ISO 8601) or digits; "
                   "adds `value`. One that does not parse has value null and an error (exit status 1).")
@click.option("--date-order", type=click.Choice(DATE_ORDERS),
              help="With --format date: the order of a date whose first group is not a 4-digit year (default: dmy).")
@backend_option
@batch_options
def read(paths: tuple[str, ...], model: str | None, as_json: bool, debug_image: str | None, method: str | None,
         reader: str | None, ensemble: bool, time_limit_s: float | None, template_path: str | None,
         value_format: str | None, date_order: str | None, layout: str, backend: str | None,
         out: str | None, **batch) -> None:
    """Read a whole handwritten number per image: a ZIP code, an amount, an ID written on one line; with
    --layout page, every handwritten number on a form page, one field each, printed text left out.

    Digits are read left to right; touching digits, specks and underlines are handled (see
    docs/reading-numbers.md, which compares the two methods). PATHS are image files or folders, searched
    recursively. Files that cannot be read are reported one line each; the others are still processed (exit
    status 1).

    \b
    CSV columns with --out: path, text (the digits; "" when none), confidence, [value with --format,] error (""
    when the file was read). With --template: path, then for each field NAME, NAME_value, NAME_confidence,
    NAME_valid, NAME_needs_review (true/false), then error. Workers decode the images; the reading runs in the
    main process.

    \b
    Examples:
      digitscan read zip_code.jpg                       zip_code.jpg: 90210 (confidence 0.997)
      digitscan read --json --debug-image boxes.png zip_code.jpg
      digitscan read --method segments zip_code.jpg     cut into digits, classify each with the shipped model
      digitscan read --model my_digits.onnx zip_code.jpg    the same with your model (onnxruntime, no PyTorch)
      digitscan read forms/ --out numbers.csv
      digitscan read --format amount cheque.png         the value too: 1250.00 for 1.250,00
      digitscan read --template form.json scans/ --out fields.csv
      digitscan read --layout page --json form.png      {"path": ..., "fields": [{"text", "raw", "box", ...}]}
    """
    from digitscan.image.decode import decode_image
    from digitscan.reading.draw import draw_segments
    from digitscan.recognize import Recognizer

    check_batch_options(out, as_json, **batch)
    if out is not None and debug_image:
        raise click.UsageError("--debug-image is not available in a batch job (--out)")
    if out is not None and layout == "page":
        raise click.UsageError("--layout page is not available in a batch job (--out): use --json")
    if layout == "page" and (template_path or value_format):
        raise click.UsageError("--layout page finds the fields itself: --template (fields at known places) and "
                               "--format (one number per image) do not apply to it")
    if method == "sequence" and (model is not None or ensemble):
        raise click.UsageError("--model and --ensemble choose the digit model, which only --method segments uses; "
                               "the line reader is chosen with --reader")
    template = form_template(template_path, value_format, debug_image)
    if date_order is not None and value_format != "date":
        raise click.UsageError("--date-order only applies to --format date (a template gives each date field its "
                               "own date_order)")
    field_spec = FieldSpec(kind=value_format, date_order=date_order or "dmy") if value_format else None
    load_options = {"path": model, "ensemble": ensemble, "backend": backend,
                    "threads": batch_model_threads(out, batch["workers"]), "reader": reader}
    recognizer = Recognizer.load(**load_options)
    # A missing or broken line reader, a model without 0-9: one error, before any file. `method` stays None unless
    # given: pages and templates then read every field with both readers, lines with the recognizer's own method.
    recognizer.warm_up(method or ("both" if layout == "page" or template is not None else recognizer.read_method))
    page_time_limit_s = time_limit_s or PAGE_TIME_LIMIT_S
    time_limit_s = time_limit_s or READ_TIME_LIMIT_S
    if out is not None:
        from digitscan.batch import read_job

        run_batch(functools.partial(read_job, method=method, time_limit_s=time_limit_s, template=template,
                                    field_spec=field_spec), recognizer, load_options, paths, out, **batch)
        return
    files = expand_paths(paths)
    if template is not None:
        process_files(files, lambda path: recognizer.read_template(path, template, method=method,
                                                                   time_limit_s=time_limit_s),
                      describe_fields, as_json, record=lambda fields: {
                          "fields": {name: result.to_dict() for name, result in fields.items()}})
        return
    drawings = debug_image_paths(files, Path(debug_image)) if debug_image else {}

    def read_one(path: Path):
        gray = decode_image(path)
        if layout == "page":
            result = recognizer.read_page(gray, method=method, time_limit_s=page_time_limit_s)
            boxes = [SimpleNamespace(digit=f.raw, confidence=f.confidence, box=f.box) for f in result.fields]
        else:
            result = recognizer.read(gray, method=method, time_limit_s=time_limit_s)
            boxes = result.digits
        if drawings:
            with atomic_write(drawings[path]) as temporary:  # PNG whatever the name says, as --help promises
                draw_segments(gray, boxes).save(temporary, format="PNG")
        return result

    def describe(result) -> str:
        if layout == "page":  # one line per field
            return "".join([f"{len(result.fields)} field{'s' * (len(result.fields) != 1)}"] + [
                f"\n  {f.raw} (confidence {f.confidence:.3f}) {f.kind} at {f.box}"
                + (f"; needs review: {f.reason}" if f.needs_review else "") for f in result.fields])
        confidence = f"(confidence {result.confidence:.3f})"
        if field_spec is None:
            if not result.text:
                return "no digits found"
            return f"{result.text} {confidence}" if result.raw in ("", result.text) else \
                f"{result.raw} (digits {result.text}) {confidence}"
        valid, value, note = field_spec.parse(result)  # when not valid, the error follows on stderr
        shown = result.raw or result.text or "no digits found"
        if not valid:
            return f"{shown} {confidence}"
        return f"{shown} = {value} {confidence}" + (f"; needs review: {note}" if note else "")

    def record(result) -> dict:
        data = result.to_dict()
        if field_spec is not None:
            valid, data["value"], reason = field_spec.parse(result)
            if not valid:
                data["error"] = reason
            elif reason:  # the value comes from an alternative reading
                data["needs_review"], data["reason"] = True, reason
        return data

    process_files(files, read_one, describe, as_json, record=record)


read.help += BATCH_HELP


def form_template(path: str | None, value_format: str | None, debug_image: str | None):
    """The --template FORM.json loaded (None without one); a bad one is a one-line usage error (exit 2) before the
    model is loaded or any file is read."""
    if path is None:
        return None
    from digitscan.errors import TemplateError
    from digitscan.fields.template import load_template

    if value_format is not None:
        raise click.UsageError("--template gives each field its own kind and pattern; --format is for one number "
                               "per image: choose one")
    if debug_image:
        raise click.UsageError("--debug-image is not available with --template")
    try:
        return load_template(path)
    except TemplateError as exc:
        raise UsageLine(one_line(exc)) from None


def describe_fields(fields: dict) -> list[str]:
    """One human line per field of a form: NAME: value (or what was read), a '?' when it needs review, why."""
    lines = []
    for name, field in fields.items():
        shown = field.value if field.valid else (field.raw or '""')
        why = f"; {field.reason}" if field.reason else ""
        lines.append(f"{name}: {shown}{' ?' if field.needs_review else ''} (confidence {field.confidence:.3f}{why})")
    return lines


def debug_image_paths(files: list[Path], out: Path) -> dict[Path, Path]:
    """Where `read --debug-image OUT` draws each input: OUT itself for one file, else OUT/<input name>.png."""
    if len(files) == 1 and not out.is_dir():
        out.parent.mkdir(parents=True, exist_ok=True)
        return {files[0]: out}
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[Path, Path] = {}
    taken: set[str] = set()
    for file in files:
        name, n = f"{file.stem}.png", 1
        while name in taken:  # the same name in two input folders
            n += 1
            name = f"{file.stem}-{n}.png"
        taken.add(name)
        paths[file] = out / name
    return paths


@main.command()
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True,
              help="Model format to write.")
@click.option("--out", "-o", type=click.Path(dir_okay=False), required=True, help="File to write, e.g. digits.onnx.")
@model_option
@click.option("--opset", type=click.IntRange(min=18),
              help="ONNX opset (default: 20, which onnxruntime >= 1.17 runs).")
@ensemble_option
def export(fmt: str, out: str, model: str | None, opset: int | None, ensemble: bool) -> None:
    """Export a model to ONNX for onnxruntime and other runtimes (edge devices, browsers, other languages).

    The graph takes "input", float32 (batch, 1, 28, 28) in [0, 1] with ink = 1 (what the preprocessing makes of
    any image), and returns "logits", float32 (batch, classes); the batch size is free. Probabilities are
    softmax(logits / temperature). The checkpoint's self-description (classes, temperature, preprocess mode,
    reject_threshold, arch, source sha256) is stored as JSON under the key "digitscan" in the model's
    metadata_props, so `digitscan predict --model FILE.onnx` needs nothing else. The file is checked with
    onnx.checker and compared with PyTorch on a fixed batch before it is written (atomically).

    \b
    Example:
      digitscan export --format onnx --out digits.onnx
      digitscan predict --model digits.onnx photo.jpg
    """
    from digitscan.models.checkpoint import load_checkpoint, load_ensemble
    from digitscan.models.export import export_onnx

    checkpoint = load_ensemble() if ensemble else load_checkpoint(model)
    result = export_onnx(checkpoint, out, **({"opset": opset} if opset else {}))
    click.echo(f"wrote {result.path} ({len(result.model) / 1024:,.0f} KiB, opset {result.meta['onnx']['opset']}, "
               f"{result.meta['arch']} from {result.meta['onnx']['source']}); parity with PyTorch: "
               f"max probability difference {result.max_prob_diff:.1e} on the check batch")


@main.group()
def data() -> None:
    """Inspect or download the MNIST dataset."""


@data.command("info")
@data_option
@click.option("--out", type=click.Path(file_okay=False), default="out/data", show_default=True,
              help="Folder for samples.png (a grid per class) and class_distribution.png.")
@json_option
def data_info(data: str | None, out: str, as_json: bool) -> None:
    """Shapes, pixel statistics and per-class counts of both splits, plus sample and distribution plots."""
    from digitscan.data.mnist import dataset_info, load_mnist
    from digitscan.plots import save_class_distribution, save_sample_grid

    info = dataset_info(data)
    images, labels = load_mnist("train", data)
    out_dir = Path(out)
    samples = save_sample_grid(images, labels, out_dir / "samples.png", title="MNIST training images per class")
    counts = {split: info[split]["class_counts"] for split in ("train", "test")}
    distribution = save_class_distribution(counts, out_dir / "class_distribution.png")
    if as_json:
        emit({**info, "plots": [str(samples), str(distribution)]})
        return
    for split in ("train", "test"):
        s, px = info[split], info[split]["pixels"]
        click.echo(f"{split}: {s['n']} images, shape {tuple(s['shape'])}, dtype {s['dtype']}, pixels min {px['min']} "
                   f"max {px['max']} mean {px['mean']:.2f} std {px['std']:.2f} "
                   f"(scaled to [0, 1]: mean {px['scaled_mean']:.4f} std {px['scaled_std']:.4f})")
        click.echo("  per class: " + "  ".join(f"{c}:{n}" for c, n in enumerate(s["class_counts"])))
    click.echo(f"plots: {samples}, {distribution}")


@data.command("fetch")
@click.option("--cache", type=click.Path(file_okay=False),
              help="Folder to download into (default: the per-user cache).")
def data_fetch(cache: str | None) -> None:
    """Download MNIST from the known mirrors ($DIGITSCAN_MIRRORS to override) and verify every file's sha256."""
    from digitscan.data.mnist import fetch_mnist

    folder = fetch_mnist(Path(cache) if cache else None)
    click.echo(f"MNIST verified in {folder}")


@main.command()
@click.option("--host", help="Address to listen on (default: 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on; 0 picks a free one (default: 8000).")
@model_option
@click.option("--preprocess", type=click.Choice(["robust", "paper"]), help="Override the checkpoint's preprocessing.")
@click.option("--ensemble", is_flag=True, default=None,
              help="Serve the shipped ensemble: a little more accurate, several times slower.")
@click.option("--max-upload-mb", type=float, help="Largest upload in MiB; 413 beyond (default: 5).")
@click.option("--max-pixels", type=int,
              help="Largest image in pixels, read from its header before decoding; 413 beyond (default: 25000000).")
@click.option("--workers", type=int,
              help="Server processes, each with its own model, threads and limits; one per core at most (default: 1).")
@click.option("--max-concurrency", type=int,
              help="Images decoded and prepared at once per worker, one thread each (default: the cores divided "
                   "among the workers).")
@click.option("--max-queue", type=int, help="Requests that may wait for a free thread; beyond that 503 (default: 64).")
@click.option("--timeout", "request_timeout_s", type=float,
              help="Seconds allowed per API request, upload included; 503 beyond (default: 10).")
@click.option("--read-time-limit", "read_time_limit_s", type=float, metavar="SECONDS",
              help="Seconds /api/read may spend on one image; 422 beyond (default: 5).")
@click.option("--page-time-limit", "page_time_limit_s", type=float, metavar="SECONDS",
              help="Seconds /api/page may spend on one form page; 422 beyond (default: 8).")
@click.option("--header-timeout", "header_timeout_s", type=float, metavar="SECONDS",
              help="Seconds a client has to send a request's headers; then the connection is closed (default: 10).")
@click.option("--keep-alive-timeout", "keep_alive_timeout_s", type=float, metavar="SECONDS",
              help="Idle seconds between requests on one connection (default: 5).")
@click.option("--max-connections", type=int,
              help="Connections open at once; a new one beyond is answered 503 and closed (default: 1000).")
@click.option("--max-header-bytes", type=int, help="Largest request line plus headers; 400 beyond (default: 16384).")
@click.option("--batch-window-ms", type=float, metavar="MS",
              help="Longest a prepared image waits for others to share its model call; 0: no waiting (default: 2).")
@click.option("--max-batch", type=int, help="Most images in one model call (default: 32).")
@click.option("--torch-threads", type=int, help="Threads per inference, onnxruntime's (or PyTorch's for a "
                                                "--model checkpoint) (default: 1).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]),
              help="Server log level (default: info).")
@click.option("--benchmark-routes", is_flag=True, default=None,
              help="Also mount POST /bench/bare (the upload answered with a constant, for benchmarks/load.py); "
                   "not for production.")
def serve(**options) -> None:
    """Serve the HTTP API and the drawing page (FastAPI on uvicorn).

    Open http://127.0.0.1:8000/ to draw digits; the API is described at /docs. Every option can also be set
    with an environment variable: DIGITSCAN_ plus the setting's name, e.g. DIGITSCAN_PORT=9000,
    DIGITSCAN_MODEL=runs/dsnet.safetensors, DIGITSCAN_MAX_UPLOAD_BYTES=1048576. Flags win over the environment.

    \b
    Routes:
      GET  /                  the drawing page
      POST /api/predict       one digit (multipart field "file")
      POST /api/read          a whole number (multipart field "file")
      POST /api/page          every field of a form page ("file"; optional "template": a FORM.json)
      GET  /healthz, /readyz  liveness; readiness (model loaded)
      GET  /metrics           Prometheus metrics

    \b
    Sizing for N cores: --workers N runs N processes, each with its own model; each
    prepares max-concurrency images at once (default: cores / workers) and batches
    the model calls of images that arrive together (--batch-window-ms, --max-batch).
    Every limit (queue, connections, ...) holds per worker.
    """
    from pydantic import ValidationError

    from digitscan.serve import Settings, run

    overrides = {name: value for name, value in options.items() if value is not None}
    if "max_upload_mb" in overrides:
        overrides["max_upload_bytes"] = round(overrides.pop("max_upload_mb") * 2**20)
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"invalid server settings: {problems}") from None
    if settings.model and not Path(settings.model).is_file():
        raise UserError(f"no such model file: '{settings.model}'")
    run(settings)
