import pytest
from torch import nn

from cnnlab import registry
from cnnlab.errors import ConfigError


def test_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError, match=r"unknown activation 'elux'; choose from: elu, .*relu"):
        registry.create("activation", "elux", 8)


def test_create_builds_a_registered_component():
    act = registry.create("activation", "leaky_relu", 8, negative_slope=0.2)
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2


def test_factory_rejects_an_option_the_component_does_not_take():
    with pytest.raises(ConfigError, match=r"activation 'elu' has no option alpah; it takes: alpha"):
        registry.factory("activation", {"name": "elu", "alpah": 2.0})


def test_factory_binds_options():
    make = registry.factory("activation", {"name": "elu", "alpha": 0.5})
    assert make(16).alpha == 0.5


def test_registering_a_name_twice_is_an_error():
    registry.register("activation", "_test_once")(lambda channels: nn.ReLU())
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("activation", "_test_once")(lambda channels: nn.ReLU())
    registry._REGISTRY["activation"].pop("_test_once")


def test_model_options_exclude_what_the_data_config_supplies():
    from cnnlab.models.build import build_model

    with pytest.raises(
        ConfigError,
        match=r"model 'nin' has no option num_classes; it takes: dropout, final_norm_act$",
    ):
        build_model(
            {"name": "nin", "num_classes": 5}, {"name": "relu"}, {"name": "bn"}, {"name": "he"}
        )
