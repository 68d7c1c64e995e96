"""Observation encoders (pg_lightning.core.encoders) and gymnasium spaces to encoders (pg_lightning.envs.spaces)."""

import logging
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from pg_lightning.cli.evaluation import evaluate
from pg_lightning.cli.train import run
from pg_lightning.core.encoders import OBS_LIMIT, FlattenFloat, ImageEncoder, MultiOneHot, OneHot, TreeEncoder
from pg_lightning.core.errors import ConfigError
from pg_lightning.core.tree import as_tensors
from pg_lightning.envs.checks import check_policy, check_value_network
from pg_lightning.envs.networks import make_policy, make_value_network
from pg_lightning.envs.spaces import (
    DropText,
    UnsupportedSpaceError,
    channels_last,
    leaves,
    make_encoder,
    sample_batch,
    text_paths,
)

ROOT = Path(__file__).resolve().parents[1]


def test_one_hot_with_start():
    encoder = OneHot(3, start=-1)
    out = encoder(torch.tensor([-1, 1, 0]))
    assert encoder.out_features == 3 and out.dtype == torch.get_default_dtype()
    assert torch.equal(out, torch.tensor([[1.0, 0, 0], [0, 0, 1], [0, 1, 0]]))


def test_flatten_float_clamps_and_handles_0d():
    encoder = FlattenFloat(6)
    obs = torch.tensor([[[1, 2, 3], [4, 5, 6]]], dtype=torch.int32)
    assert encoder.out_features == 6
    assert torch.equal(encoder(obs), torch.arange(1.0, 7.0).unsqueeze(0))
    out = FlattenFloat(2)(torch.tensor([[float("inf"), -1e12]], dtype=torch.float64))
    assert out.dtype == torch.get_default_dtype() and out.tolist() == [[OBS_LIMIT, -OBS_LIMIT]]
    assert FlattenFloat(1)(torch.tensor([2.5, -1.0])).shape == (2, 1)
    assert torch.isnan(FlattenFloat(1)(torch.tensor([float("nan")]))).all()


def test_multi_one_hot_matches_a_loop_with_multi_dim_nvec_and_start():
    nvec, start = np.array([[2, 5], [3, 1]]), np.array([[0, -2], [4, 7]])
    space = spaces.MultiDiscrete(nvec, start=start, seed=3)
    obs = np.stack([space.sample() for _ in range(20)])
    encoder = MultiOneHot(nvec, start)
    out = encoder(torch.as_tensor(obs))
    expected = torch.cat(
        [
            torch.nn.functional.one_hot(torch.as_tensor(obs[:, i, j] - start[i, j]), int(nvec[i, j]))
            for i in range(2)
            for j in range(2)
        ],
        dim=1,
    ).float()
    assert encoder.out_features == 11 and out.shape == (20, 11)
    assert torch.equal(out, expected)
    assert MultiOneHot([3, 2])(torch.tensor([[2, 1]])).tolist() == [[0, 0, 1, 0, 1]]  # scalar start 0
    assert not MultiOneHot([3, 2]).state_dict()  # buffers are not persistent


@pytest.mark.parametrize(
    ("shape", "last", "features"),
    [((7, 7, 3), True, 64), ((4, 84, 84), False, 512), ((210, 160, 3), True, 512), ((3, 3, 3), True, 64)],
)
def test_image_encoder_shapes(shape, last, features):
    encoder = ImageEncoder(shape, channels_last=last)
    obs = torch.randint(0, 256, (2, *shape), dtype=torch.uint8)
    out = encoder(obs)
    assert encoder.out_features == features and out.shape == (2, features)
    assert (out >= 0).all() and torch.isfinite(out).all()
    assert ImageEncoder(shape, channels_last=last, features=10)(obs).shape == (2, 10)


def test_image_encoder_small_cnn_layers():
    convs = [m for m in ImageEncoder((7, 7, 3), True).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64] and all(c.kernel_size == (2, 2) for c in convs)
    convs = [m for m in ImageEncoder((3, 3, 3), True).modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32]


def test_image_encoder_too_small():
    with pytest.raises(ValueError, match="too small for a CNN"):
        ImageEncoder((2, 2, 3), channels_last=True)


def test_channels_last_and_channels_first_agree():
    torch.manual_seed(0)
    hwc = ImageEncoder((7, 5, 3), channels_last=True)
    chw = ImageEncoder((3, 7, 5), channels_last=False)
    chw.load_state_dict(hwc.state_dict())
    obs = torch.randint(0, 256, (4, 7, 5, 3), dtype=torch.uint8)
    assert torch.equal(hwc(obs), chw(obs.permute(0, 3, 1, 2).contiguous()))


def test_channels_last_rule():
    assert channels_last((7, 7, 3)) and channels_last((210, 160, 3)) and channels_last((84, 84, 4))
    assert not channels_last((4, 84, 84)) and not channels_last((1, 84, 84)) and not channels_last((8, 84, 84))


def test_tree_encoder_on_nested_dict_tuple_matches_manual_concatenation():
    space = spaces.Dict(
        [
            ("pair", spaces.Tuple([spaces.Discrete(3), spaces.Dict({"pos": spaces.Box(-1, 1, (2,))})])),
            ("flag", spaces.MultiBinary(2)),
            ("ignored", spaces.Discrete(9)),
        ]
    )
    assert [path for path, _ in leaves(space)] == ["pair/0", "pair/1/pos", "flag", "ignored"]
    obs = as_tensors(sample_batch(space, 5))
    encoders = {"flag": FlattenFloat(2), "pair/1/pos": FlattenFloat(2), "pair/0": OneHot(3)}
    tree = TreeEncoder(encoders)
    one_hot = torch.nn.functional.one_hot(obs["pair"][0], 3)
    expected = torch.cat([obs["flag"].float(), obs["pair"][1]["pos"], one_hot], 1)
    assert tree.out_features == 7 and torch.equal(tree(obs), expected.float())
    assert TreeEncoder({"a.b": FlattenFloat(1)})({"a.b": torch.ones(2)}).shape == (2, 1)  # ModuleDict would refuse


def test_make_encoder_on_minigrid_after_drop_text(caplog, monkeypatch):
    pytest.importorskip("minigrid")
    import pg_lightning.envs.spaces as spaces_module

    monkeypatch.setattr(
        spaces_module, "_LOGGED", set()
    )  # once per env and process: this test's process may have logged
    with caplog.at_level(logging.INFO, logger="pg_lightning.envs.spaces"):
        env = DropText(gym.make("MiniGrid-Empty-5x5-v0"))
        DropText(gym.make("MiniGrid-Empty-5x5-v0")).close()  # a second copy (every env copy is wrapped): no second line
    assert [r.getMessage() for r in caplog.records] == [
        "MiniGrid-Empty-5x5-v0: dropped the text observation(s) ['mission'] (pg_lightning encodes no text)"
    ]
    assert [path for path, _ in leaves(env.observation_space)] == ["direction", "image"]
    encoder = make_encoder(env.observation_space)
    assert isinstance(encoder, TreeEncoder) and isinstance(encoder.encoders[1], ImageEncoder)
    assert encoder.out_features == 4 + 64
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"direction", "image"} and env.observation_space.contains(obs)
    assert encoder(as_tensors({k: np.asarray(v)[None] for k, v in obs.items()})).shape == (1, 68)
    assert encoder(as_tensors(sample_batch(env.observation_space, 3))).shape == (3, 68)
    env.close()


def test_make_encoder_on_blackjack_tuple_and_multidiscrete():
    env = gym.make("Blackjack-v1")
    encoder = make_encoder(env.observation_space)
    assert [path for path, _ in leaves(env.observation_space)] == ["0", "1", "2"]
    assert encoder.out_features == 32 + 11 + 2
    batch = sample_batch(env.observation_space, 4)
    out = encoder(as_tensors(batch))
    assert out.shape == (4, 45) and out.sum(1).tolist() == [3.0] * 4
    encoder = make_encoder(spaces.MultiDiscrete([3, 4]), "onehot")
    assert isinstance(encoder, MultiOneHot) and encoder(torch.tensor([[2, 0]])).tolist() == [[0, 0, 1, 1, 0, 0, 0]]


def test_make_encoder_leaf_choices():
    assert isinstance(make_encoder(spaces.Box(0, 1, (3,))), FlattenFloat)
    assert make_encoder(spaces.Box(0, 1, ())).out_features == 1
    assert isinstance(make_encoder(spaces.MultiBinary(4)), FlattenFloat)
    assert isinstance(make_encoder(spaces.Discrete(5), "flatten"), OneHot)  # flatten keeps one-hot for discrete
    assert isinstance(make_encoder(spaces.Box(0, 255, (7, 7, 3), np.uint8), "flatten"), FlattenFloat)
    float_image = make_encoder(spaces.Box(0, 1, (3, 8, 8)), "cnn")
    assert isinstance(float_image, ImageEncoder) and float_image.scale == 1.0 and not float_image.channels_last


def test_encoder_mapping_override_and_errors():
    space = spaces.Dict({"direction": spaces.Discrete(4), "image": spaces.Box(0, 255, (7, 7, 3), np.uint8)})
    encoder = make_encoder(space, {"image": "flatten"})
    assert isinstance(encoder.encoders[1], FlattenFloat) and encoder.out_features == 4 + 147
    with pytest.raises(ConfigError) as err:
        make_encoder(space, {"img": "flatten"})
    assert str(err.value) == "network.encoder: no observation at 'img'; the observation paths are 'direction', 'image'"
    with pytest.raises(ConfigError, match=r"^network.encoder\['image'\] must be one of auto, flatten, onehot, cnn"):
        make_encoder(space, {"image": "mlp"})
    with pytest.raises(ConfigError, match="^network.encoder must be one of"):
        make_encoder(space, "conv")
    with pytest.raises(ConfigError, match="onehot needs a Discrete or MultiDiscrete .* at 'image' is Box"):
        make_encoder(space, "onehot")
    with pytest.raises(ConfigError, match="cnn needs an image .* at 'direction' is Discrete"):
        make_encoder(space, "cnn")


def test_too_small_image_names_network_encoder():
    space = spaces.Dict({"image": spaces.Box(0, 255, (2, 2, 3), np.uint8)})
    with pytest.raises(ConfigError) as err:
        make_encoder(space)
    assert str(err.value) == (
        "network.encoder: the image at 'image' is 2x2, too small for a CNN; use network.encoder=flatten "
        "(or {image: flatten})"
    )
    assert make_encoder(space, "flatten").out_features == 12
    with pytest.raises(ConfigError, match="^network.encoder: the image observation is 2x2"):
        make_encoder(spaces.Box(0, 255, (3, 2, 2), np.uint8), "cnn")


@pytest.mark.parametrize(
    ("space", "where"),
    [
        (spaces.Dict({"nodes": spaces.Graph(spaces.Box(0, 1, (2,)), spaces.Discrete(3))}), " at 'nodes'"),
        (spaces.Tuple([spaces.Discrete(2), spaces.Sequence(spaces.Discrete(3))]), " at '1'"),
        (spaces.OneOf([spaces.Discrete(2)]), ""),
        (spaces.Text(5), " is all text"),
    ],
)
def test_unsupported_spaces_give_one_line_naming_env_id(space, where):
    with pytest.raises(UnsupportedSpaceError) as err:
        make_encoder(space)
    message = str(err.value)
    assert "\n" not in message and message.startswith("env.id: ")
    assert "unsupported observation space " in message or "is all text" in message
    assert f"{where}: pg_lightning encodes Box, Discrete, MultiDiscrete, MultiBinary, Dict and Tuple" in message
    assert isinstance(err.value, ConfigError)


class _SpaceEnv(gym.Env):
    def __init__(self, space: gym.Space) -> None:
        self.observation_space, self.action_space = space, spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def test_drop_text_on_dict_tuple_and_pure_text(caplog):
    space = spaces.Dict(
        [
            ("b", spaces.Box(0, 1, (2,))),
            ("mission", spaces.Text(8)),
            ("pair", spaces.Tuple([spaces.Text(3), spaces.Discrete(3)])),
            ("notes", spaces.Dict({"t": spaces.Text(4)})),
        ],
        seed=0,
    )
    assert text_paths(space) == ["mission", "pair/0", "notes/t"]
    with caplog.at_level(logging.INFO, logger="pg_lightning.envs.spaces"):
        env = DropText(_SpaceEnv(space))
    assert len(caplog.records) == 1 and "['mission', 'pair/0', 'notes/t']" in caplog.records[0].getMessage()
    expected = spaces.Dict([("b", spaces.Box(0, 1, (2,))), ("pair", spaces.Tuple([spaces.Discrete(3)]))])
    assert env.observation_space == expected
    obs, _ = env.reset(seed=1)
    assert list(obs) == ["b", "pair"] and len(obs["pair"]) == 1 and env.observation_space.contains(obs)
    assert DropText(_SpaceEnv(spaces.Discrete(3))).observation_space == spaces.Discrete(3)  # nothing to drop
    with pytest.raises(UnsupportedSpaceError, match=r"^env.id: the observation space Text\(.*\) of _SpaceEnv is all"):
        DropText(_SpaceEnv(spaces.Text(5)))
    with pytest.raises(UnsupportedSpaceError, match="is all text"):
        DropText(_SpaceEnv(spaces.Dict({"m": spaces.Text(5)})))


def test_sample_batch_matches_sync_vector_env():
    space = spaces.Dict(
        {
            "box": spaces.Box(-1, 1, (2, 3)),
            "disc": spaces.Discrete(4, start=1),
            "multi": spaces.MultiDiscrete([2, 3]),
            "bits": spaces.MultiBinary(3),
            "tup": spaces.Tuple([spaces.Box(0, 255, (4, 4, 3), np.uint8), spaces.Discrete(2)]),
        },
        seed=0,
    )
    state = space.np_random.bit_generator.state
    venv = gym.vector.SyncVectorEnv([lambda: _SpaceEnv(space)] * 3)
    real, _ = venv.reset(seed=0)
    mine = sample_batch(space, 3)
    assert space.np_random.bit_generator.state == state  # the space's own RNG is untouched
    leaves_real, leaves_mine = (
        [(p, _get(obs, p).shape, _get(obs, p).dtype) for p, _ in leaves(space)] for obs in (real, mine)
    )
    assert type(mine) is dict and type(mine["tup"]) is tuple and list(mine) == list(real)
    assert leaves_mine == leaves_real
    assert venv.observation_space.contains(mine)
    assert as_tensors(mine)["tup"][0].dtype == torch.uint8
    venv.close()


def _get(obs, path):
    for part in path.split("/"):
        obs = obs[part] if isinstance(obs, dict) else obs[int(part)]
    return obs


def test_encoders_module_imports_neither_gymnasium_nor_lightning():
    code = (
        "import sys, pg_lightning.core.encoders\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('gymnasium', 'lightning', 'pytorch_lightning')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True)


def test_make_encoder_on_a_tuple_with_text_uses_the_paths_drop_text_gives():
    from pg_lightning.envs.checks import check_policy
    from pg_lightning.envs.networks import make_policy

    space = spaces.Tuple((spaces.Text(5), spaces.Box(-1, 1, (3,))))
    assert make_encoder(space).paths == ["0"]  # the Box is element 0 once the text is dropped, as DropText re-indexes
    check_policy(make_policy(space, spaces.Discrete(2)), space, spaces.Discrete(2))


# --- 0-d observation spaces: one feature (they were accepted, then an IndexError at the first forward) ----------


class ScalarObsEnv(gym.Env):
    """Observations are one number, a 0-d Box: the position on a line; reach +3 (action 1 steps right)."""

    observation_space = gym.spaces.Box(-10.0, 10.0, shape=(), dtype=np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = float(self.np_random.integers(-2, 2))
        return np.array(self.x, dtype=np.float32), {}

    def step(self, action):
        self.x += 1.0 if int(action) == 1 else -1.0
        terminated = abs(self.x) >= 3
        return np.array(self.x, dtype=np.float32), float(self.x >= 3), terminated, False, {}


gym.register("pg_lightning_tests/ScalarObs-v0", entry_point=ScalarObsEnv, max_episode_steps=20)


@pytest.mark.parametrize("space", [gym.spaces.Box(-1.0, 1.0, shape=()), gym.spaces.MultiBinary(())])
def test_a_0d_observation_space_is_one_feature(space):
    obs = torch.as_tensor(np.stack([space.sample() for _ in range(5)]))  # (5,) or (5, 1), as the collector stacks
    for action_space in (gym.spaces.Discrete(3), gym.spaces.Box(-1.0, 1.0, (2,))):
        policy = make_policy(space, action_space)
        assert policy.net[0].in_features == 1
        check_policy(policy, space, action_space)  # the contract check agrees with the factory
        dist = policy(obs)
        assert tuple(dist.batch_shape) == (5,) and dist.log_prob(dist.sample()).shape == (5,)
    value_net = make_value_network(space)
    check_value_network(value_net, space)
    assert value_net(obs).shape == (5,)


def test_a_0d_observation_is_the_feature_a_1_element_one_is():
    scalar = make_policy(gym.spaces.Box(-1.0, 1.0, ()), gym.spaces.Discrete(3))
    vector = make_policy(gym.spaces.Box(-1.0, 1.0, (1,)), gym.spaces.Discrete(3))
    vector.load_state_dict(scalar.state_dict())
    x = torch.tensor([0.5, -0.25])
    assert torch.equal(scalar(x).logits, vector(x[:, None]).logits)


def test_training_on_an_env_with_0d_box_observations(make_cfg, tmp_path):
    cfg = make_cfg(
        "data.episodes_per_epoch=4", "data.num_envs=2", "callbacks.progress_bar.refresh_rate=0",
        "env.id=pg_lightning_tests/ScalarObs-v0", "env.return_threshold=null", "trainer.max_epochs=2",
        "baseline=value", "data.vectorization_mode=sync",
    )  # fmt: skip
    run(cfg)
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 1
    summary = evaluate(tmp_path / "checkpoints" / "last.ckpt", episodes=2)
    assert len(summary["lengths"]) == 2
