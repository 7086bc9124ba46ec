import numpy as np
import pytest

from ferlab.errors import ConfigError
from ferlab.labels import FER7, get_label_set, list_label_sets


def test_fer7_is_identity():
    ls = get_label_set("fer7")
    assert ls.names == FER7
    np.testing.assert_array_equal(ls.map_codes(np.arange(7)), np.arange(7))


def test_reduced5_drops_disgust_and_fear():
    ls = get_label_set("reduced5")
    assert ls.names == ("angry", "happy", "sad", "surprise", "neutral")
    np.testing.assert_array_equal(ls.map_codes(np.arange(7)), [0, -1, -1, 1, 2, 3, 4])


def test_merge_disgust_into_angry():
    ls = get_label_set("fer7:disgust>angry")
    assert ls.num_classes == 6 and "disgust" not in ls.names
    assert ls.map_codes(np.array([1]))[0] == ls.names.index("angry")
    assert get_label_set("fer6-disgust-as-angry").mapping == ls.mapping


def test_distribution_mapping_sums_merged_mass():
    ls = get_label_set("fer7:disgust>angry")
    dist = np.zeros((1, 7), dtype=np.float32)
    dist[0, 0], dist[0, 1] = 0.25, 0.5
    assert ls.map_distribution(dist)[0, ls.names.index("angry")] == pytest.approx(0.75)


def test_unknown_label_set_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'fer7'"):
        get_label_set("fer8")
    with pytest.raises(ConfigError, match="class"):
        get_label_set("fer7:-digust")
    assert "reduced5" in list_label_sets()
