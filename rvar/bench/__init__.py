"""Speed and memory measurements of the method and its baselines (``rvar bench``, ``benchmarks/``).

* :mod:`rvar.bench.sampling`: RestoreVAR's next-scale sampling against the latent-diffusion baseline's denoising
  loop, in one process (``rvar bench``), and the timing helpers the other modules share;
* :mod:`rvar.bench.pipeline`: the whole restore (tokenizer, prior, refiner, decoder) per size and precision
  (``rvar bench --pipeline``);
* :mod:`rvar.bench.steps`: every full-size training stage for a few real optimizer steps
  (``python -m rvar.bench.steps``);
* :mod:`rvar.bench.gpu`: the GPU measurements run by ``benchmarks/gpu.sh`` (``python -m rvar.bench.gpu``).

Nothing here is imported by the library itself; only ``rvar.commands.bench`` and the scripts use it.
"""
