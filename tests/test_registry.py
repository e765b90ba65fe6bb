import pytest

from ml4ge.registry import Registry, UnknownNameError


def test_register_and_get():
    registry = Registry("encoder block")

    @registry.register("conv_encode")
    def conv_encode():
        return "conv"

    registry.register("dense_encode", len)
    assert registry.get("conv_encode") is conv_encode
    assert registry.get("dense_encode") is len
    assert registry.names() == ["conv_encode", "dense_encode"]
    assert "conv_encode" in registry and len(registry) == 2


def test_registering_a_name_twice_is_an_error():
    registry = Registry("merge block")
    registry.register("pair", object())
    with pytest.raises(ValueError, match="merge block 'pair' is already registered"):
        registry.register("pair", object())


def test_unknown_name_lists_closest_matches():
    registry = Registry("decoder block")
    for name in ("conv_decode", "dense_decode", "linear_decode"):
        registry.register(name, name)
    with pytest.raises(UnknownNameError) as error:
        registry.get("conv_decod")
    message = str(error.value)
    assert "Unknown decoder block 'conv_decod'" in message
    assert "Did you mean 'conv_decode'" in message
