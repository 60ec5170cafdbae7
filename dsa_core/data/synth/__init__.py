"""Synthetic data in the real on-disk formats (no dataset can be downloaded here): ``scene.py`` renders streets with
exact Cityscapes labels, ``sprites.py`` paints the anomaly / outlier objects, ``synthetic.py`` writes Cityscapes and
COCO, ``anomaly_synth.py`` the anomaly benchmarks. Everything here fakes data; the readers of real data are the
modules of ``dsa_core.data`` itself."""
