"""How strongly an image repeats with a period of 32, 16, 8 or 4 pixels along its rows (a grid you can see).

    python benchmarks/grid_spectrum.py IMAGE.png [MORE.png ...]

For each period, the row spectrum's magnitude at that frequency (mean over rows) divided by the median of its six
neighbouring frequencies: about 1 for a natural photo, well above 1 for a regular grid. The demo's 64 px tiles
overlap by 32 px (tile seams would show at 32); the tiny tokenizer's latent cells are 8 px.
"""
import sys

import numpy as np
from PIL import Image

for path in sys.argv[1:]:
    gray = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    spectrum = np.abs(np.fft.rfft(gray - gray.mean(1, keepdims=True), axis=1)).mean(0)
    ratios = []
    for period in (32, 16, 8, 4):
        k = gray.shape[1] // period
        around = np.r_[spectrum[k - 3:k], spectrum[k + 1:k + 4]]
        ratios.append(f"{period} px {spectrum[k] / np.median(around):.2f}")
    print(f"{path}: " + ", ".join(ratios))
