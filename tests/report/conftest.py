"""Each job's small outputs, made once per session (see samples.py)."""

from __future__ import annotations

import pytest

from tests.report import samples


@pytest.fixture(scope="session")
def report_root(tmp_path_factory):
    return tmp_path_factory.mktemp("report_samples")


@pytest.fixture(scope="session")
def norms_out(report_root, tiny_model_dir):
    return samples.make_norms(report_root, tiny_model_dir)


@pytest.fixture(scope="session")
def rephrase_out(report_root):
    return samples.make_rephrase(report_root)


@pytest.fixture(scope="session")
def augment_out(report_root):
    return samples.make_augment(report_root)


@pytest.fixture(scope="session")
def cluster_out(report_root):
    return samples.make_cluster(report_root)


@pytest.fixture(scope="session")
def responses_out(report_root):
    return samples.make_responses(report_root)


@pytest.fixture(scope="session")
def train_out(report_root):
    return samples.make_train(report_root)
