"""Convert fitted scikit-learn regressors to wren's model format.

docs/MODEL_FORMAT.md defines the format, "wren-model/1". `encode` turns
request-shaped rows (dicts of feature name -> value) into the matrix an
estimator is fitted on, by the same rules wren applies to a prediction
request, so a model trained on `encode(rows, features)` sees the same
numbers when wren serves it.

    X = encode(rows, features)
    estimator.fit(X, y)
    write(export(estimator, features, "sales", "1.0.0"), "models/sales.json")
"""

import json
import math
import numbers
import os
import re
import string
import tempfile
from pathlib import Path

import numpy as np
from sklearn.dummy import DummyRegressor
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.tree import DecisionTreeRegressor
from sklearn.utils.validation import check_is_fitted

FORMAT = "wren-model/1"

# The loader's rules for names and versions; checked here so a bad one fails
# at export rather than when the server loads the file.
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_VERSION = re.compile(r"[!#-~]{1,64}")  # printable ASCII except space and "

# wren compares category strings ignoring ASCII case only; str.lower() would
# also fold non-ASCII letters and accept strings wren refuses.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _ascii_lower(text):
    return text.translate(_ASCII_LOWER)


def _is_number(value):
    # JSON true/false are not numbers, though Python's bool is an int.
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _encoder(feature):
    """(width, put) for one feature: put(slot, value) writes the encoding of
    `value` into `slot`, a view of `width` zeroed positions of the row, or
    raises ValueError for a value wren would refuse."""
    kind = feature["type"]
    if kind == "integer":
        low, high = feature["min"], feature["max"]

        def put(slot, value):
            if not _is_number(value) or not float(value).is_integer():
                raise ValueError(f"expected a whole number, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{value} is outside {low}..={high}")
            slot[0] = value

        return 1, put
    if kind == "number":
        low, high = feature.get("min", -math.inf), feature.get("max", math.inf)

        def put(slot, value):
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"expected a finite number, got {value!r}")
            if not low <= value <= high:
                raise ValueError(f"{value} is outside {low}..={high}")
            slot[0] = value

        return 1, put
    if kind == "category":
        values = feature["values"]
        index = {_ascii_lower(v): i for i, v in enumerate(values)}
        # The loader's rules: an alias names a value exactly, and matches no
        # other value or alias ignoring case (it may repeat its own value).
        for alias, target in feature.get("aliases", {}).items():
            if target not in values:
                raise ValueError(f"alias {alias!r} names {target!r}, which is not a value")
            target_index = values.index(target)
            if index.setdefault(_ascii_lower(alias), target_index) != target_index:
                raise ValueError(f"alias {alias!r} clashes with another value or alias")

        def lookup(value):
            if not isinstance(value, str) or _ascii_lower(value) not in index:
                raise ValueError(f"{value!r} is not one of {values}")
            return index[_ascii_lower(value)]

        encoding = feature["encoding"]
        if encoding == "one_hot":

            def put(slot, value):
                slot[lookup(value)] = 1.0

            return len(values), put
        if encoding == "ordinal":

            def put(slot, value):
                slot[0] = lookup(value)

            return 1, put
        raise ValueError(f"feature {feature['name']!r}: unknown encoding {encoding!r}")
    raise ValueError(f"feature {feature['name']!r}: unknown type {kind!r}")


def encoded_width(features):
    """The number of positions `encode` produces for `features`."""
    return sum(_encoder(feature)[0] for feature in features)


def encode(rows, features):
    """The encoded input of each row, one row of the result per dict in
    `rows`, as MODEL_FORMAT.md defines it. Raises ValueError for a missing
    feature or a value wren would refuse."""
    encoders = [_encoder(feature) for feature in features]
    out = np.zeros((len(rows), sum(width for width, _ in encoders)))
    for r, row in enumerate(rows):
        column = 0
        for feature, (width, put) in zip(features, encoders, strict=True):
            name = feature["name"]
            if name not in row:
                raise ValueError(f"row {r}: no value for feature {name!r}")
            try:
                put(out[r, column : column + width], row[name])
            except ValueError as err:
                raise ValueError(f"row {r}, feature {name!r}: {err}") from None
            column += width
    return out


def apply_output(values, output):
    """What wren answers for model values `values` under the model's
    `output` section: round half away from zero (np.round rounds half to
    even), then clamp."""
    values = np.asarray(values, dtype=float)
    if output is None:
        return values
    if output.get("round"):
        whole = np.trunc(values)
        values = whole + np.where(np.abs(values - whole) >= 0.5, np.sign(values), 0.0)
    clamp = output.get("clamp")
    if clamp is not None:
        values = np.clip(values, clamp["min"], clamp["max"])
    return values


def _plain(value):
    """`value` with numpy scalars and arrays turned into plain Python ones,
    so json writes ints as ints and floats by their exact repr."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return _plain(value.tolist())
    return value


def _single_output(estimator, n_outputs):
    if n_outputs != 1:
        raise ValueError(
            f"{type(estimator).__name__} predicts {n_outputs} outputs; wren models predict one"
        )


def _linear(estimator):
    coef = np.asarray(estimator.coef_, dtype=float)
    intercept = np.asarray(estimator.intercept_, dtype=float)
    # Fitted on a y of shape (n, 1), coef_ is (1, n_features): still one output.
    _single_output(estimator, 1 if coef.ndim == 1 else coef.shape[0])
    return {
        "kind": "linear",
        "intercept": float(intercept.reshape(-1)[0]),
        "coefficients": coef.reshape(-1).tolist(),
    }


def _tree(tree_estimator):
    tree = tree_estimator.tree_
    _single_output(tree_estimator, tree.n_outputs)
    # scikit-learn's own arrays: wren walks them exactly as sklearn does.
    return {
        "feature": tree.feature.tolist(),
        "threshold": tree.threshold.tolist(),
        "left": tree.children_left.tolist(),
        "right": tree.children_right.tolist(),
        "value": tree.value[:, 0, 0].tolist(),
    }


def _ensemble(aggregate, trees, base_score=None, learning_rate=None):
    model = {"kind": "tree_ensemble", "aggregate": aggregate}
    if base_score is not None:
        model["base_score"] = base_score
        model["learning_rate"] = learning_rate
    # sklearn casts inputs to float32 before comparing them with thresholds.
    model["feature_precision"] = "float32"
    model["trees"] = [_tree(tree) for tree in trees]
    return model


def _gradient_boosting(estimator):
    # Other losses fit leaf values through a link function (or a quantile),
    # which base_score + learning_rate * sum does not express.
    if estimator.loss != "squared_error":
        raise ValueError(
            f"GradientBoostingRegressor(loss={estimator.loss!r}) cannot be exported: "
            "only loss='squared_error' is supported"
        )
    init = estimator.init_
    if isinstance(init, str) and init == "zero":
        base_score = 0.0
    elif isinstance(init, DummyRegressor) and np.size(init.constant_) == 1:
        base_score = float(np.asarray(init.constant_).reshape(-1)[0])
    else:
        raise ValueError(
            f"GradientBoostingRegressor(init={init!r}) cannot be exported: its "
            "initial prediction must be a constant (init=None or 'zero')"
        )
    # estimators_ is (n_stages, 1) for regression; early stopping may have
    # cut n_stages below n_estimators.
    return _ensemble(
        "sum",
        estimator.estimators_[:, 0],
        base_score=base_score,
        learning_rate=float(estimator.learning_rate),
    )


def _model(estimator):
    if isinstance(estimator, (LinearRegression, Ridge, Lasso)):
        return _linear(estimator)
    if isinstance(estimator, GradientBoostingRegressor):
        return _gradient_boosting(estimator)
    if isinstance(estimator, RandomForestRegressor):
        _single_output(estimator, estimator.n_outputs_)
        return _ensemble("mean", estimator.estimators_)
    if isinstance(estimator, DecisionTreeRegressor):
        return _ensemble("sum", [estimator])
    raise TypeError(
        f"cannot export {type(estimator).__name__}: supported are LinearRegression, "
        "Ridge, Lasso, DecisionTreeRegressor, RandomForestRegressor and "
        "GradientBoostingRegressor"
    )


def export(estimator, features, name, version, output=None, training=None):
    """The wren-model/1 document for a fitted `estimator` whose input is
    `encode(rows, features)`. `output` and `training` are the optional
    sections of the same names, included as given."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"model name {name!r}: 1 to 64 letters, digits and ._-")
    if not _VERSION.fullmatch(version):
        raise ValueError(f'version {version!r}: 1 to 64 printable ASCII characters, no " or space')
    check_is_fitted(estimator)
    width = encoded_width(features)
    if estimator.n_features_in_ != width:
        raise ValueError(
            f"{type(estimator).__name__} was fitted on {estimator.n_features_in_} "
            f"columns but the features encode to {width}"
        )
    document = {
        "format": FORMAT,
        "name": name,
        "version": version,
        "features": _plain(features),
        "model": _model(estimator),
    }
    if output is not None:
        document["output"] = _plain(output)
    if training is not None:
        document["training"] = _plain(training)
    return document


def _compact(value):
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _layout(value, depth):
    """JSON text for `value`: the top two levels one entry a line (the
    features and the trees one per line, each compact), deeper levels
    compact, so the file reads well yet large tree arrays stay small."""
    indent = "  " * depth
    inner = indent + "  "
    if depth < 2 and isinstance(value, dict) and value:
        entries = [f"{inner}{json.dumps(k)}: {_layout(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(entries) + "\n" + indent + "}"
    if depth < 2 and isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        entries = [inner + _compact(v) for v in value]
        return "[\n" + ",\n".join(entries) + "\n" + indent + "]"
    return _compact(value)


def write(model, path):
    """Write `model` (from `export`) to `path`, keeping its field order.
    The file is replaced atomically: a server reloading it never reads half
    a model."""
    text = _layout(model, 0) + "\n"
    path = Path(path)
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        os.unlink(temp)
        raise
