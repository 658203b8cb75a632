"""A stand-in for onnxruntime's Python API (the part the Export.md snippet uses), running the model in onnxruntime-node."""
import json
import os
import subprocess
import tempfile

import numpy as np

_HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "run-model.mjs")


def _node(*args):
    return json.loads(subprocess.run(["node", _HELPER, *args], check=True, capture_output=True, text=True).stdout)


class _Value:
    def __init__(self, name):
        self.name = name


class _ModelMeta:
    def __init__(self, metadata):
        self.custom_metadata_map = metadata


class InferenceSession:
    def __init__(self, path, providers=None):
        self._path = os.path.abspath(path)
        self._info = _node("describe", self._path)

    def get_modelmeta(self):
        return _ModelMeta(self._info["metadata"])

    def get_inputs(self):
        return [_Value(n) for n in self._info["inputs"]]

    def get_outputs(self):
        return [_Value(n) for n in self._info["outputs"]]

    def run(self, output_names, feeds):
        names = output_names or self._info["outputs"]
        with tempfile.TemporaryDirectory() as work:
            for name, array in feeds.items():
                array = np.ascontiguousarray(array)
                array.tofile(os.path.join(work, f"{name}.bin"))
                with open(os.path.join(work, f"{name}.json"), "w") as f:
                    json.dump({"dtype": str(array.dtype), "shape": list(array.shape)}, f)
            shapes = _node("run", self._path, work, *feeds.keys())
            out = []
            for name in names:
                dtype = {"float64": np.float64, "float32": np.float32, "bool": np.bool_}[shapes[name]["dtype"]]
                out.append(np.fromfile(os.path.join(work, f"out-{name}.bin"), dtype=dtype).reshape(shapes[name]["shape"]))
            return out
