"""The Python API the CLI's commands are built on: train, load, export, evaluate and classify from code.

    import edgeblood
    clf = edgeblood.Classifier("se-cnn-28")                 # a pretrained model, no training needed
    preds = clf.predict(["cell.png"])                       # class, probability, top-k, domain check
    run = edgeblood.train("se-cnn", 28, sample=True, epochs=2)   # progress=True for the CLI's bars
    run.export(["onnx"])

Training reports to callbacks (``edgeblood.Callback``: on_epoch_end and friends, plain numbers) and
prints nothing unless asked, so a notebook's output stays its own.

It lives in its own package (not beside the core modules) because it reaches into training, the
exporters and the bench, which the core layer may not import; ``import edgeblood`` stays light and
loads it on first use. Errors are the ``edgeblood.errors`` family: catch ``DataError``, ``RunError``,
``ModelError``, ``ExportError``, ``MissingExtraError``, or all of them as ``EdgebloodError``.
"""

from edgeblood.api.classifier import Classifier
from edgeblood.api.runs import Run, load, train
from edgeblood.training.callbacks import BatchEnd, Callback, EpochEnd, EpochStart, Evaluation, TrainEnd, TrainStart

__all__ = ["BatchEnd", "Callback", "Classifier", "EpochEnd", "EpochStart", "Evaluation", "Run", "TrainEnd", "TrainStart", "load", "train"]
