"""Run `rvar fit` (a fidelity stage) with FidelityModule.fit_image_switch wrapped to save the buffer, labels, switch
inputs, pool and gate first, for switch_variants.py:

    DUMP=buffer.pt python benchmarks/gate_study/dump_buffer.py fit --config FIDELITY.yaml
"""
import os, sys, torch
import rvar.lit.fidelity as lf
orig = lf.FidelityModule.fit_image_switch
def wrapped(self):
    if self.buffer:
        torch.save(dict(buffer=self.buffer, labels=self.buffer_labels, inputs=self.buffer_inputs, pool=self.pool,
                        gate=self.gate.state_dict(), config=self.gate.config.to_dict(), psnr_cap=self.psnr_cap), os.environ['DUMP'])
    return orig(self)
lf.FidelityModule.fit_image_switch = wrapped
from rvar.cli import main
sys.exit(main())
