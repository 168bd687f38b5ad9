"""The model side of litbench: plain networks (``architectures``), optimizers and schedules by name
(``optim``), regularizers, the classification LightningModule and saliency maps.

Importing this package is cheap on purpose; import the submodule you need.
"""
