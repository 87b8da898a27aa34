"""Parity check: wren must predict what scikit-learn predicts.

For each estimator type tools/export_sklearn.py exports, fit one on a
synthetic data set with features of every kind, export it, serve it with the
given wren binary and ask POST /api/v1/predict for held-out rows. wren's
answers must match estimator.predict to a relative 1e-6, and the
/api/v1/openapi.json it serves for the model must be valid OpenAPI 3.1
describing the model's features.

The requests spell categories in other letter cases and through aliases,
and put numbers exactly on and next to the trees' split thresholds, where
a wrong float32 rounding, or a JSON number parsed one unit in the last
place off, sends a row down the other branch. (scikit-learn's thresholds
are often exact midpoints of two float32 values, so an input equal to one
is a rounding tie.)

    .venv/bin/python tools/check_parity.py target/debug/wren    (or: make parity)

Prints one line per estimator type; exits 1 if any of them fails.
"""

import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import openapi_spec_validator
import requests
from sklearn.ensemble import GradientBoostingRegressor, RandomForestRegressor
from sklearn.linear_model import Lasso, LinearRegression, Ridge
from sklearn.tree import DecisionTreeRegressor

import export_sklearn

TOLERANCE = 1e-6
SEED = 11
ROWS = 1000
TRAIN_ROWS = 700  # the other 300 are held out and sent to wren
EDGE_SPLITS = 60  # tree splits whose thresholds are turned into requests
BATCH = 100  # instances per request
START_TIMEOUT = 30.0  # seconds for the server to say it is listening
REQUEST_TIMEOUT = 30.0
LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")

DISTRICTS = ["North", "south", "east", "west", "centre"]
CONDITIONS = ["poor", "fair", "good", "excellent"]
# One feature of each kind. Mixed-case values and aliases check that wren
# matches both without regard to ASCII case.
FEATURES = [
    {"name": "rooms", "type": "integer", "min": 0, "max": 50},
    {"name": "area", "type": "number", "min": 0, "max": 1000},
    {
        "name": "district",
        "type": "category",
        "encoding": "one_hot",
        "values": DISTRICTS,
        "aliases": {"n": "North", "center": "centre", "Downtown": "centre"},
    },
    {
        "name": "condition",
        "type": "category",
        "encoding": "ordinal",
        "values": CONDITIONS,
        "aliases": {"ok": "fair", "NEW": "excellent"},
    },
]
ROOMS, AREA = 0, 1  # their positions in the encoded input


class Failure(Exception):
    pass


def estimators():
    return [
        LinearRegression(),
        Ridge(alpha=1.0, random_state=0),
        Lasso(alpha=0.5, max_iter=10000, random_state=0),
        DecisionTreeRegressor(max_depth=10, random_state=0),
        RandomForestRegressor(n_estimators=40, max_depth=10, random_state=0),
        GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0),
    ]


def make_rows(rng):
    """ROWS instances in their canonical spelling, and their targets."""
    rooms = rng.integers(0, 13, ROWS)
    # Mostly full float64 precision, so inputs change when rounded to
    # float32; some in quarters, so some thresholds (their midpoints) are
    # exact in float32 and an input can equal one.
    area = rng.uniform(15.0, 400.0, ROWS)
    area = np.where(rng.random(ROWS) < 0.3, np.round(area * 4.0) / 4.0, area)
    district = rng.integers(0, len(DISTRICTS), ROWS)
    condition = rng.integers(0, len(CONDITIONS), ROWS)
    district_effect = np.array([120.0, -40.0, 10.0, 0.0, 300.0])[district]
    y = (
        40.0 * rooms
        + 1.5 * area
        + 150.0 * np.sin(area / 50.0)
        + district_effect
        + 60.0 * condition
        + 0.3 * rooms * area
        + rng.normal(0.0, 20.0, ROWS)
    )
    rows = [
        {
            "rooms": int(rooms[i]),
            "area": float(area[i]),
            "district": DISTRICTS[district[i]],
            "condition": CONDITIONS[condition[i]],
        }
        for i in range(ROWS)
    ]
    return rows, y


def fitted_trees(estimator):
    if isinstance(estimator, GradientBoostingRegressor):
        return estimator.estimators_[:, 0]
    if isinstance(estimator, RandomForestRegressor):
        return estimator.estimators_
    if isinstance(estimator, DecisionTreeRegressor):
        return [estimator]
    return []


def edge_rows(estimator, base_rows):
    """Rows whose numbers sit on or next to split thresholds of the fitted
    trees: each is a base row that reaches the split, with the split's
    feature set to the threshold itself, the next double up and the float32
    values either side (for the number), or the whole numbers either side
    (for the integer). The changed row still reaches the split: a threshold
    lies inside the range of values that lead to its node."""
    encoded = export_sklearn.encode(base_rows, FEATURES)
    splits = []
    for tree in fitted_trees(estimator):
        reached = tree.decision_path(encoded).tocsc()
        for node in np.flatnonzero(np.isin(tree.tree_.feature, (ROOMS, AREA))):
            rows_there = reached[:, node].indices
            if len(rows_there):
                splits.append((tree.tree_.feature[node], tree.tree_.threshold[node], rows_there[0]))
    if len(splits) > EDGE_SPLITS:
        splits = [splits[i] for i in np.linspace(0, len(splits) - 1, EDGE_SPLITS).astype(int)]
    rows = []
    for position, t, base in splits:
        if position == AREA:
            below = np.float32(t)
            if below > t:
                below = np.nextafter(below, np.float32(-np.inf))
            above = np.nextafter(below, np.float32(np.inf))
            changes = [("area", float(v)) for v in (t, np.nextafter(t, np.inf), below, above)]
        else:
            changes = [("rooms", int(np.floor(t))), ("rooms", int(np.ceil(t)))]
        for name, value in changes:
            row = dict(base_rows[base])
            row[name] = value
            rows.append(row)
    return rows


def respell(rows, rng):
    """The same rows with categories as a client might write them: another
    letter case or an alias, half of the time."""
    categories = [feature for feature in FEATURES if feature["type"] == "category"]
    spellings = {}
    for feature in categories:
        for value in feature["values"]:
            aliases = [a for a, target in feature["aliases"].items() if target == value]
            options = [value.upper(), value.lower(), value.swapcase(), value.title()]
            options += aliases + [a.swapcase() for a in aliases]
            spellings[value] = options
    respelled = []
    for row in rows:
        row = dict(row)
        for feature in categories:
            if rng.random() < 0.5:
                options = spellings[row[feature["name"]]]
                row[feature["name"]] = options[rng.integers(len(options))]
        respelled.append(row)
    return respelled


@contextmanager
def serve(binary, model_path, data_dir):
    """Run wren with the model on a free port; yields its base URL and the
    lines it has written to stderr so far. Kills it on the way out."""
    command = [str(binary), "--host", "127.0.0.1", "--port", "0"]
    command += ["--data-dir", str(data_dir), "--model", str(model_path)]
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = []
    lines = queue.Queue()

    # Reading stderr on a thread keeps the pipe drained while requests run
    # and lets the wait for the port time out.
    def pump():
        for line in process.stderr:
            log.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise Failure(
                    f"wren did not say it was listening within {START_TIMEOUT:g}s"
                ) from None
            if line is None:
                tail = "".join(log[-10:]).rstrip()
                raise Failure(f"wren exited with status {process.wait()} before listening:\n{tail}")
            match = LISTENING.search(line)
            if match:
                break
        yield f"http://127.0.0.1:{match.group(1)}", log
    finally:
        process.kill()
        process.wait()


def check_openapi(base_url, model_path):
    """The served API description is valid OpenAPI 3.1 and names the
    model's features, with the types the model file gives them."""
    document = requests.get(f"{base_url}/api/v1/openapi.json", timeout=10).json()
    try:
        openapi_spec_validator.validate(document)
    except Exception as err:
        raise Failure(f"/api/v1/openapi.json is not valid OpenAPI: {err}") from None
    features = json.loads(Path(model_path).read_text())["features"]
    instance = document["components"]["schemas"]["Instance"]
    for feature in features:
        schema = instance["properties"].get(feature["name"])
        expected = {"integer": "integer", "number": "number", "category": "string"}[feature["type"]]
        if schema is None or schema.get("type") != expected:
            raise Failure(f"/api/v1/openapi.json describes {feature['name']!r} as {schema!r}")


def predict(base_url, instances, expected_model):
    predictions = []
    with requests.Session() as session:
        for start in range(0, len(instances), BATCH):
            batch = instances[start : start + BATCH]
            response = session.post(
                f"{base_url}/api/v1/predict",
                json={"instances": batch},
                timeout=REQUEST_TIMEOUT,
            )
            if response.status_code != 200:
                raise Failure(f"POST /api/v1/predict: {response.status_code} {response.text[:500]}")
            body = response.json()
            if body.get("model") != expected_model:
                raise Failure(
                    f"response names model {body.get('model')!r}, expected {expected_model!r}"
                )
            answers = body.get("predictions")
            if not isinstance(answers, list) or len(answers) != len(batch):
                raise Failure(f"{len(batch)} instances sent, got predictions {answers!r:.200}")
            predictions += answers
    return np.array(predictions, dtype=float)


def check(binary, workdir, estimator, rows, y, rng):
    """Fit, export, serve and compare one estimator; returns the number of
    instances compared, the largest relative difference and where it is."""
    label = type(estimator).__name__
    estimator.fit(export_sklearn.encode(rows[:TRAIN_ROWS], FEATURES), y[:TRAIN_ROWS])
    held_out = rows[TRAIN_ROWS:]
    canonical = held_out + edge_rows(estimator, held_out)
    sent = respell(canonical, rng)
    encoded = export_sklearn.encode(canonical, FEATURES)
    if not np.array_equal(export_sklearn.encode(sent, FEATURES), encoded):
        raise Failure("export_sklearn.encode reads a respelled category differently")
    expected = estimator.predict(encoded)

    name = f"parity-{label}"
    model_path = Path(workdir) / f"{label}.json"
    export_sklearn.write(export_sklearn.export(estimator, FEATURES, name, "1"), model_path)
    with serve(binary, model_path, Path(workdir) / "data") as (base_url, log):
        try:
            got = predict(base_url, sent, {"name": name, "version": "1"})
            check_openapi(base_url, model_path)
        except Failure as err:
            raise Failure(f"{err}\nwren's log ends:\n{''.join(log[-10:]).rstrip()}") from None
    difference = np.abs(got - expected) / np.maximum(1.0, np.abs(expected))
    worst = int(np.argmax(difference))
    where = f"{sent[worst]}: wren {float(got[worst])!r}, scikit-learn {float(expected[worst])!r}"
    return len(sent), float(difference[worst]), where


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} WREN_BINARY", file=sys.stderr)
        return 2
    binary = Path(sys.argv[1]).resolve()
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        print(f"{sys.argv[0]}: {binary} is not an executable file", file=sys.stderr)
        return 2
    rng = np.random.default_rng(SEED)
    rows, y = make_rows(rng)
    passed = failed = 0
    with tempfile.TemporaryDirectory(prefix="wren-parity-") as workdir:
        for estimator in estimators():
            label = type(estimator).__name__
            try:
                count, difference, where = check(binary, workdir, estimator, rows, y, rng)
            except (Failure, requests.RequestException) as err:
                print(f"{label:<26} FAIL: {err}", flush=True)
                failed += 1
                continue
            ok = difference <= TOLERANCE
            verdict = "ok" if ok else f"FAIL (tolerance {TOLERANCE:g}), worst {where}"
            summary = f"{label:<26} {count:4d} instances, max relative difference {difference:.2e}"
            print(f"{summary}  {verdict}", flush=True)
            passed += ok
            failed += not ok
    print(f"parity: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
