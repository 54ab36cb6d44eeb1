"""MIML datasets: the in-memory dataset, the MIML ARFF reader, the registry and summaries."""

from tuner.data.arff import read_miml_arff
from tuner.data.dataset import DataWarning, MIMLDataset
from tuner.data.info import describe, format_description
from tuner.data.registry import dataset_names, load_dataset

__all__ = [
    "DataWarning",
    "MIMLDataset",
    "dataset_names",
    "describe",
    "format_description",
    "load_dataset",
    "read_miml_arff",
]
