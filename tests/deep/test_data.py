"""sbil.deep.data re-exports the demonstrations, Minari storage and recording modules."""

from __future__ import annotations

from sbil.deep import collection, data, datasets, demonstrations


def test_every_public_name_is_the_object_of_its_home_module():
    homes = {
        "Demonstrations": demonstrations,
        "DatasetError": demonstrations,
        "from_arrays": demonstrations,
        "load_demonstrations": datasets,
        "check_dataset_id": datasets,
        "dataset_path": datasets,
        "datasets_root": datasets,
        "default_dataset_id": datasets,
        "collect": collection,
        "CollectResult": collection,
    }
    assert set(data.__all__) == set(homes)
    for name, module in homes.items():
        assert getattr(data, name) is getattr(module, name), name
