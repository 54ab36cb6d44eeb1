"""MIML datasets: the in-memory dataset, the readers (MIML ARFF, Mulan ARFF, MATLAB), the
registry and summaries."""

from tuner.data.arff import read_miml_arff
from tuner.data.dataset import DataWarning, MIMLDataset
from tuner.data.info import describe, format_description
from tuner.data.matlab import read_miml_mat
from tuner.data.mulan import read_mulan_arff
from tuner.data.registry import dataset_names, detect_format, load_dataset

__all__ = [
    "DataWarning",
    "MIMLDataset",
    "dataset_names",
    "describe",
    "detect_format",
    "format_description",
    "load_dataset",
    "read_miml_arff",
    "read_miml_mat",
    "read_mulan_arff",
]
