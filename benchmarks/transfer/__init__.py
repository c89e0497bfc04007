"""Speed benchmark: mvlpt's training path against a reference-style path (issues 6 and 8, part 3).

In one process, on one machine, for CoOp, VPT and UPT:

* **ours**: the real :class:`mvlpt.training.train.Trainer` (cut text context, CoOp image features read from
  the frozen-feature cache that the workflow's ``frozen_features`` rule writes, VPT class text
  features computed once, one joint run serving both directions, ``--seeds`` seeds stacked in one
  forward pass, bf16 autocast on a GPU);
* **reference style**: a plain loop written like the MVLPT reference code's trainer (the same
  prompt modules and frozen towers, but the image encoder runs on every step, the 77-token text
  sequence runs on every step and on every evaluation batch, one run per direction and per seed,
  one model load per run). Its images are held in memory as uint8, so it pays no JPEG decoding:
  the baseline is, if anything, flattered.

The task pair is synthetic (random pixels) but has the class names and class counts of two
ELEVATER tasks (``--pair``; default dtd (47 classes) + cifar-100 (100)), 20 shots per class
(16 train + 4 val), as in the paper's pairwise study. Each path trains ``--epochs`` epochs; the
times are extrapolated to the paper's 200 epochs (set-up + 200 x (train + val epoch) + test).

The whole-study estimate (GPU-hours) sums the paper's job list (20 ELEVATER tasks, 3 methods,
seeds 1-3, 200 epochs; ours: 20 baselines + 190 joint runs per method + one feature job per task
for CoOp; reference style: (20 + 380) x 3 runs per method), each job priced with a cost model of
its steps: text-tower and image-tower costs measured here as functions of tokens / images
(``components``), calibrated per method and path against the measured runs of the pair
(``calibration``), plus the measured set-up and per-process overhead. Class counts, class names
(cut lengths) and test-set sizes come from mvlpt's ELEVATER metadata.

Also measured: the per-job overhead of a workflow job (interpreter start, imports, device init,
model load, and ``mvlpt train`` of a tiny run against its in-process training time); FLOPs per
step with ``torch.utils.flop_counter.FlopCounterMode`` and, on a GPU, model-FLOPs utilisation
against the H100 SXM dense bf16 peak (989.4 TFLOP/s, ``--peak-tflops``); peak GPU memory; a
profile of one epoch (train + validation) of each method (torch.profiler on a GPU, cProfile on
the CPU).

Commands::

    # CPU, the tiny model (under 5 minutes on 2 cores)
    python benchmarks/bench_transfer.py --preset cpu
    # GPU, ViT-B-16 with random weights (timing only)
    python benchmarks/bench_transfer.py --preset gpu
    # anything else, e.g.
    python benchmarks/bench_transfer.py --device cuda --model ViT-B-16-quickgelu --epochs 4 --methods coop

Results: a JSON file (``--out``; default ``benchmarks/results/<host>-<device>-<date>.json``)
and a summary printed at the end.

The parts: :mod:`.common` (presets, the paper's configuration, the benchmark pair, timing
primitives), :mod:`.timing` ("ours" through the real Trainer, tower components, per-job overhead),
:mod:`.reference` (the reference-style path), :mod:`.estimate` (the cost model and the study
estimate), :mod:`.flops`, :mod:`.profiling`, :mod:`.summary` (the printed tables) and
:mod:`.__main__` (the command line; ``python benchmarks/bench_transfer.py`` or
``python -m benchmarks.transfer``).
"""
