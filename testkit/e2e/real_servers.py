"""Model servers we did not write, from PyPI, each in a virtualenv of its own (their pins clash with
each other and with ours), cached by their pins under the build cache.

    mlserver  MLServer 1.7.1 with its scikit-learn runtime: `mlserver start DIR`
    kserve    the KServe Python model server 0.21.0: a `kserve.Model` run by `kserve.ModelServer`
    llama     llama.cpp's OpenAI-compatible server (llama-cpp-python 0.3.36, built from its sdist:
              PyPI has no Linux wheel) serving a tiny GGUF model the `gguf` package writes here

The models are real scikit-learn models trained here on generated data, and tiny language models
with random weights (nothing is downloaded).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from devkit.sandbox.build import cache_root
from devkit.sandbox.processes import free_port

from e2e.harness import stop_process, wait_until

PINS = {
    "mlserver": ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "scikit-learn==1.9.1"),
    "kserve": ("kserve==0.21.0",),
    "llama": ("llama-cpp-python[server]==0.3.36", "gguf==0.19.0"),
}
# llama.cpp compiles for about 10 minutes on 2 busy cores; the multimodal library is left out.
BUILD_ENV = {"llama": {"CMAKE_ARGS": "-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF "
                                     "-DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF"}}
INSTALL_TIMEOUT_S = 3600


def server_python(name: str) -> Path:
    """The interpreter of `name`'s virtualenv, created and installed on first use."""
    pins = PINS[name]
    key = hashlib.sha256("\n".join((sys.version, *pins)).encode()).hexdigest()[:12]
    home = cache_root() / "servers" / f"{name}-{key}"
    python = home / "bin" / "python"
    done = home / ".installed"
    home.parent.mkdir(parents=True, exist_ok=True)
    with (home.parent / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one install at a time, also across test processes
        if not done.exists():
            subprocess.run([sys.executable, "-m", "venv", "--clear", str(home)], check=True, timeout=120)
            subprocess.run([str(python), "-m", "pip", "install", "-q", *pins], check=True,
                           timeout=INSTALL_TIMEOUT_S, env={**os.environ, **BUILD_ENV.get(name, {})})
            done.write_text("\n".join(pins))
    return python


# Trains in the server's own interpreter (scikit-learn lives there), on a generated, linearly
# separable data set: a logistic regression, or a random forest of `trees` trees (slower to
# predict, as a bigger model is). `flip` trains on labels with a share flipped (a less accurate
# model), and `reject_negative` puts a validation step in front that raises on inputs whose last
# feature is negative: the model's own failure mode, the server unchanged.
_TRAIN = textwrap.dedent("""
    import json, sys
    import joblib, numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    sys.path.insert(0, sys.argv[2])
    from guards import reject_negative_last
    options = json.loads(sys.argv[3])
    rng = np.random.default_rng(options["seed"])
    x = rng.normal(size=(2000, 4))
    if options["reject_negative"]:
        x[:, -1] = np.abs(x[:, -1])  # the data it was trained on had the last feature clipped at 0
    y = (x @ np.array([1.0, -0.5, 0.25, 0.0]) > 0).astype(int)
    if options["flip"]:
        flipped = rng.random(len(y)) < options["flip"]
        y = np.where(flipped, 1 - y, y)
    steps = [FunctionTransformer(reject_negative_last)] if options["reject_negative"] else []
    model = RandomForestClassifier(options["trees"], random_state=0) if options["trees"] else LogisticRegression()
    joblib.dump(make_pipeline(*steps, model).fit(x, y), sys.argv[1])
""")
_GUARDS = textwrap.dedent('''
    """A model's own input check, shipped beside the model."""
    import numpy as np

    def reject_negative_last(x):
        x = np.asarray(x)
        if (x[:, -1] < 0).any():
            raise ValueError("this model was trained on clipped data: the last feature must be >= 0")
        return x
''')


@dataclass(frozen=True)
class ModelVersion:
    name: str
    flip: float = 0.0  # share of training labels flipped: a less accurate model
    reject_negative: bool = False  # raises on inputs with a negative last feature
    trees: int = 0  # a random forest of this many trees instead of a logistic regression
    seed: int = 1


def train(directory: Path, version: ModelVersion) -> Path:
    """A model directory for MLServer: model.joblib, the model's guards module and model-settings.json."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "guards.py").write_text(_GUARDS)
    options = {"seed": version.seed, "flip": version.flip, "reject_negative": version.reject_negative,
               "trees": version.trees}
    subprocess.run([str(server_python("mlserver")), "-c", _TRAIN, str(directory / "model.joblib"), str(directory),
                    json.dumps(options)], check=True, timeout=300)
    (directory / "model-settings.json").write_text(json.dumps({
        "name": version.name, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib"}}))
    return directory


# The offline answer to "how often do these two models disagree?": both models on the same rows, in
# the server's own interpreter, the way the comparator's rate must come out on the mirrored traffic.
_DISAGREE = textwrap.dedent("""
    import json, sys
    import joblib, numpy as np
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
    first, second = joblib.load(sys.argv[1] + "/model.joblib"), joblib.load(sys.argv[2] + "/model.joblib")
    rows = np.array(json.loads(sys.stdin.read()))
    print(float((first.predict(rows) != second.predict(rows)).mean()))
""")


def disagreement(first: Path, second: Path, rows: list[list[float]]) -> float:
    """The share of `rows` on which two trained model directories predict different labels."""
    done = subprocess.run([str(server_python("mlserver")), "-c", _DISAGREE, str(first), str(second)],
                          input=json.dumps(rows), capture_output=True, text=True, check=True, timeout=300)
    return float(done.stdout.strip())


@dataclass
class RunningServer:
    url: str  # inference
    metrics_url: str
    process: subprocess.Popen[bytes]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 120) -> None:
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout, f"{url} ready (log: {log})")


@contextmanager
def mlserver(model_dir: Path, model: str, host: str = "127.0.0.1") -> Iterator[RunningServer]:
    """MLServer serving one model directory on free ports; its metrics on a port of their own."""
    http, grpc, metrics = free_port(), free_port(), free_port()
    # parallel_workers 0: the model runs in the server process (the worker pool of 1.7.1 cannot
    # start under the uvloop release pip picks today).
    (model_dir / "settings.json").write_text(json.dumps({
        "host": host, "http_port": http, "grpc_port": grpc, "metrics_port": metrics, "parallel_workers": 0}))
    log = model_dir / "mlserver.log"
    env = dict(os.environ, PYTHONPATH=str(model_dir))
    with log.open("wb") as output:
        process = subprocess.Popen([str(server_python("mlserver").parent / "mlserver"), "start", str(model_dir)],
                                   cwd=model_dir, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://{host}:{http}/v2/models/{model}/ready", process, log)
        yield RunningServer(f"http://{host}:{http}", f"http://{host}:{metrics}/metrics", process)
    finally:
        stop_process(process, 10)


@dataclass
class MLServerRecipe:
    """MLServer as the server of a pod (a `fleet.Recipe`): each pod serves a copy of the model directory
    trained for its image, on the pod's address, with its metrics on port + 2."""

    models: dict[str, ModelVersion]  # image -> the model it stands for
    model: str  # the name clients ask for: /v2/models/<model>/infer
    trained: dict[str, Path] = field(default_factory=dict)

    def prepare(self, workdir: Path) -> MLServerRecipe:
        """Install MLServer and train every model now, before anything is timed: a first install or a
        training on a busy machine is not a server that fails to start."""
        server_python("mlserver")
        for image, version in self.models.items():
            if image not in self.trained:
                self.trained[image] = train(workdir / "models" / image.replace(":", "_").replace("/", "_"), version)
        return self

    def for_image(self, image: str) -> MLServerRecipe | None:
        return self if image in self.models else None

    def command(self, want: Any, workdir: Path) -> tuple[list[str], dict[str, str]]:
        image = want.image
        if image not in self.trained:
            self.trained[image] = train(workdir / "models" / image.replace(":", "_").replace("/", "_"),
                                        self.models[image])
        pod_dir = workdir / "pods" / want.pod
        shutil.rmtree(pod_dir, ignore_errors=True)
        shutil.copytree(self.trained[image], pod_dir)
        settings = json.loads((pod_dir / "model-settings.json").read_text())
        settings["name"] = self.model
        settings["parameters"]["version"] = want.version  # answers name it; the metrics label still says None
        (pod_dir / "model-settings.json").write_text(json.dumps(settings))
        (pod_dir / "settings.json").write_text(json.dumps({
            "host": want.address, "http_port": want.port, "grpc_port": want.port + 1,
            "metrics_port": self.metrics_port(want), "parallel_workers": 0}))
        mlserver_bin = server_python("mlserver").parent / "mlserver"
        return [str(mlserver_bin), "start", str(pod_dir)], {"PYTHONPATH": str(pod_dir)}

    def health_path(self) -> str:
        return f"/v2/models/{self.model}/ready"

    def metrics_port(self, want: Any) -> int:
        return int(want.port) + 2


_KSERVE_POD = textwrap.dedent("""
    import sys
    import uvicorn
    from kserve import Model, ModelServer

    host, port, model, version, fail_below = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], float(sys.argv[5])

    class PodAddress(uvicorn.Config):
        # KServe binds 0.0.0.0; here the pods share one network namespace, so each binds its own address.
        def __init__(self, *args, **kwargs):
            kwargs["host"] = host
            super().__init__(*args, **kwargs)

    uvicorn.Config = PodAddress

    class Scorer(Model):
        def __init__(self, name):
            super().__init__(name)
            self.ready = True

        def predict(self, payload, headers=None):
            rows = payload["instances"]
            if any(len(row) != 4 for row in rows):
                raise ValueError("expects 4 features")
            if any(row[3] < fail_below for row in rows):
                raise RuntimeError("the model cannot score this input")  # an HTTP 500, as a model's crash is
            return {"predictions": [float(sum(row) > 0) for row in rows], "model_version": version}

    ModelServer(http_port=port, workers=1, enable_grpc=False).start([Scorer(model)])
""")


@contextmanager
def kserve(directory: Path, model: str) -> Iterator[RunningServer]:
    """The KServe Python model server with a small scikit-free model; metrics on its HTTP port."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "kserve.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(server_python("kserve")), "-c", _KSERVE_POD, "127.0.0.1", str(port), model,
                                    "v1", "-inf"], cwd=directory, stdout=output, stderr=subprocess.STDOUT)
    try:
        _wait_ready(f"http://127.0.0.1:{port}/v1/models/{model}", process, log)
        yield RunningServer(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/metrics", process)
    finally:
        stop_process(process, 10)


@dataclass
class KServeRecipe:
    """KServe's Python model server as the server of a pod (a `fleet.Recipe`), on the pod's address, its
    metrics on its HTTP port. The model of an image fails every input whose last feature is under
    `fail_below[image]` (-inf: never); KServe counts no failures, so only a gateway can see them."""

    fail_below: dict[str, float]  # image -> the threshold of its model's failures
    model: str  # the name clients ask for: /v1/models/<model>:predict

    def prepare(self) -> KServeRecipe:
        server_python("kserve")  # installed before anything is timed
        return self

    def for_image(self, image: str) -> KServeRecipe | None:
        return self if image in self.fail_below else None

    def command(self, want: Any, workdir: Path) -> tuple[list[str], dict[str, str]]:
        return ([str(server_python("kserve")), "-c", _KSERVE_POD, want.address, str(want.port), self.model,
                 want.version, repr(self.fail_below[want.image])], {})

    def health_path(self) -> str:
        return f"/v1/models/{self.model}"

    def metrics_port(self, want: Any) -> int:
        return int(want.port)


# A tiny llama-architecture model with random weights, written with `gguf`: a SentencePiece vocabulary
# of 40 words (plus the byte tokens SentencePiece falls back on), 2 layers of width 64. A constant
# direction in the embeddings, carried by the residual stream, keeps bytes and special tokens far
# below every word, so answers are words. `sharpness` scales the output layer: at 5 and temperature
# 0.8 the same request is answered differently about a fifth of the time (similarity under 0.8).
# `perturb` adds noise to the output layer, as a broken quantization would: at 0.5 it answers unlike
# the unperturbed model about two times in three.
_TINY_LM = textwrap.dedent("""
    import json, sys
    import gguf, numpy as np
    path, options = sys.argv[1], json.loads(sys.argv[2])
    rng = np.random.default_rng(options["seed"])
    words = ("the a model answers cat dog runs fast slow red blue green sky sea tree stone river light dark "
             "moon sun rain wind fire snow bird fish road city song book door hand eye time day night house "
             "field star").split()
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + ["\u2581" + w for w in words]
    specials = 3 + 256
    n_vocab, n_embd, n_ff, n_layer, n_head = len(tokens), 64, 128, 2, 4
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(512); w.add_embedding_length(n_embd); w.add_block_count(n_layer)
    w.add_feed_forward_length(n_ff); w.add_head_count(n_head); w.add_head_count_kv(n_head)
    w.add_rope_dimension_count(n_embd // n_head); w.add_layer_norm_rms_eps(1e-5); w.add_file_type(0)
    w.add_tokenizer_model("llama"); w.add_token_list(tokens)
    w.add_token_scores([0.0] * specials + [-float(i) for i in range(len(words))])
    w.add_token_types([2, 3, 3] + [6] * 256 + [1] * len(words))
    w.add_bos_token_id(1); w.add_eos_token_id(2); w.add_unk_token_id(0)

    def matrix(rows, columns, scale=1.0):
        return (rng.standard_normal((rows, columns)) * scale / np.sqrt(columns)).astype(np.float32)

    embeddings = matrix(n_vocab, n_embd, np.sqrt(n_embd))
    embeddings[:, 0] = 5.0
    w.add_tensor("token_embd.weight", embeddings)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(f"blk.{i}.{name}.weight", matrix(n_embd, n_embd))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", matrix(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_up.weight", matrix(n_ff, n_embd))
        w.add_tensor(f"blk.{i}.ffn_down.weight", matrix(n_embd, n_ff))
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    output = matrix(n_vocab, n_embd, options["sharpness"])
    output[:, 0] = 0.0
    output[:specials, 0] = -5.0
    noise = np.random.default_rng(options["seed"] + 1000).standard_normal(output.shape).astype(np.float32)
    noise[:, 0] = 0.0
    output += noise * options["perturb"] * options["sharpness"] / np.sqrt(n_embd)
    if options["favour"]:
        output[specials + words.index(options["favour"]), 0] = options["favour_logit"]
    w.add_tensor("output.weight", output.astype(np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
""")


@dataclass(frozen=True)
class TinyLM:
    sharpness: float = 5.0  # the output layer's scale: higher answers the same request more alike
    perturb: float = 0.0  # noise on the output layer, relative to it: a degraded copy of the same model
    seed: int = 1  # the weights
    favour: str = ""  # a word the model leans to, by `favour_logit` on its output row: a model that repeats itself
    favour_logit: float = 0.0


def write_tiny_lm(path: Path, model: TinyLM) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"sharpness": model.sharpness, "perturb": model.perturb, "seed": model.seed, "favour": model.favour,
               "favour_logit": model.favour_logit}
    subprocess.run([str(server_python("llama")), "-c", _TINY_LM, str(path), json.dumps(options)], check=True,
                   timeout=120)
    return path


@dataclass
class LlamaRecipe:
    """llama.cpp's OpenAI-compatible server (llama-cpp-python) as the server of a pod (a `fleet.Recipe`):
    one thread, the image's tiny model, on the pod's address; it serves no metrics (the gateway
    counts the requests). Each pod samples from its own seed, as separate replicas do. The server
    names no version; asked for no model by name, it answers with its model file's path, so each
    pod's file is named for its revision (`revision_of` reads it back)."""

    models: dict[str, TinyLM]  # image -> the model it stands for
    model: str  # the name clients ask for
    written: dict[str, Path] = field(default_factory=dict)

    def prepare(self, workdir: Path) -> LlamaRecipe:
        """Build llama.cpp and write every model now, before anything is timed."""
        for image, version in self.models.items():
            if image not in self.written:
                self.written[image] = write_tiny_lm(workdir / f"{image.replace(':', '_')}.gguf", version)
        return self

    def for_image(self, image: str) -> LlamaRecipe | None:
        return self if image in self.models else None

    def command(self, want: Any, workdir: Path) -> tuple[list[str], dict[str, str]]:
        if want.image not in self.written:
            self.prepare(workdir)
        seed = int(hashlib.sha256(want.pod.encode()).hexdigest()[:7], 16)
        pod_model = workdir / "pods" / want.pod / f"{want.version}.gguf"
        pod_model.parent.mkdir(parents=True, exist_ok=True)
        pod_model.unlink(missing_ok=True)
        pod_model.symlink_to(self.written[want.image])
        return ([str(server_python("llama")), "-m", "llama_cpp.server", "--model", str(pod_model),
                 "--model_alias", self.model, "--host", want.address, "--port", str(want.port), "--n_ctx", "512",
                 "--n_threads", "1", "--seed", str(seed), "--verbose", "false"], {})

    def health_path(self) -> str:
        return "/v1/models"

    @staticmethod
    def revision_of(answer: dict[str, Any]) -> str:
        return Path(str(answer.get("model") or "")).stem

    def metrics_port(self, want: Any) -> int:
        return int(want.port)
